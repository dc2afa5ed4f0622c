"""The TAXII 2.1 endpoints under ``/taxii2/``: thin views over ``minga.taxii.services``.

Each view is wrapped by ``endpoint``, which does what the spec asks of every request, in order:
the method (405), the caller's API token, as a Bearer token or as the password of HTTP Basic
(401), the Accept header (406); then it maps ``TaxiiError`` and the domain's exceptions to
error-message bodies. Plain Django views, not the REST API's: TAXII has its own media types,
headers and error bodies.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Callable
from functools import wraps
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from minga.core import tokens
from minga.core.models import User
from minga.taxii import federation, services
from minga.taxii.services import MEDIA_STIX, MEDIA_TAXII, TaxiiError

READ_CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # envelopes larger than this are spooled to a temporary file
WWW_AUTHENTICATE = 'Bearer realm="minga", Basic realm="minga"'

View = Callable[..., HttpResponse]


# --- media types ---------------------------------------------------------------------------------


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    kind, *params = (part.strip() for part in value.split(";"))
    parsed: dict[str, str] = {}
    for param in params:
        name, _sep, val = param.partition("=")
        parsed[name.strip().lower()] = val.strip().strip('"')
    return kind.lower(), parsed


def _is_taxii_21(kind: str, params: dict[str, str], stix_too: bool) -> bool:
    kinds = ("application/taxii+json", "application/stix+json") if stix_too else ("application/taxii+json",)
    return kind in kinds and params.get("version", "2.1") == "2.1"


def negotiate(accept: str, *, stix_too: bool = False) -> str | None:
    """The media type to answer with for this Accept header, or None (406). TAXII 2.1 only:
    ``application/taxii+json;version=2.1`` (a missing version means the newest, 2.1), and on
    the object endpoints ``application/stix+json;version=2.1`` too; wildcards take TAXII."""
    if not accept.strip():
        return MEDIA_TAXII
    for entry in accept.split(","):
        kind, params = _media_type(entry)
        if params.get("q", "1") in ("0", "0.0", "0.00", "0.000"):
            continue
        if kind in ("*/*", "application/*"):
            return MEDIA_TAXII
        if _is_taxii_21(kind, params, stix_too):
            return MEDIA_STIX if kind == "application/stix+json" else MEDIA_TAXII
    return None


# --- responses -----------------------------------------------------------------------------------


def respond(body: dict[str, Any], media_type: str = MEDIA_TAXII, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), content_type=media_type, status=status)


def error(status: int, title: str, description: str = "", **headers: str) -> HttpResponse:
    """A TAXII error message (section 3.6.1)."""
    body: dict[str, Any] = {"title": title, "http_status": str(status)}
    if description:
        body["description"] = description
    response = respond(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _added_headers(response: HttpResponse, page: services.Page) -> HttpResponse:
    if page.first_added is not None and page.last_added is not None:
        response["X-TAXII-Date-Added-First"] = services.timestamp(page.first_added)
        response["X-TAXII-Date-Added-Last"] = services.timestamp(page.last_added)
    return response


# --- authentication ------------------------------------------------------------------------------


def authenticate(request: HttpRequest) -> User | None:
    """The user of the API token presented as ``Bearer <token>``, or as the password of HTTP
    Basic (any user name: clients that only speak Basic put one)."""
    scheme, _sep, credentials = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return tokens.user_for_token(credentials)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, _colon, password = decoded.partition(":")
        return tokens.user_for_token(password)
    return None


def endpoint(*methods: str, stix_too: bool = False) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return error(
                    405,
                    _("Method not allowed"),
                    _("This endpoint answers %(methods)s.") % {"methods": ", ".join(methods)},
                    Allow=", ".join(methods),
                )
            user = authenticate(request)
            if user is None:
                return error(
                    401,
                    _("Authentication required"),
                    _(
                        "Send a valid, unexpired API token of this node as 'Authorization: Bearer "
                        "<token>', or as the password of HTTP Basic authentication."
                    ),
                    WWW_Authenticate=WWW_AUTHENTICATE,
                )
            request.user = user
            media_type = negotiate(request.META.get("HTTP_ACCEPT", ""), stix_too=stix_too)
            if media_type is None:
                return error(
                    406,
                    _("Not acceptable"),
                    _("This server answers with %(types)s.")
                    % {"types": " or ".join([MEDIA_TAXII, MEDIA_STIX] if stix_too else [MEDIA_TAXII])},
                )
            try:
                return view(request, user, media_type, *args, **kwargs)
            except TaxiiError as exc:
                return error(exc.status, exc.title, exc.description, **exc.headers)
            except Http404:
                return error(404, _("Not found"))
            except PermissionDenied as exc:
                return error(403, _("Forbidden"), str(exc))
            except ValidationError as exc:
                return error(400, _("Bad request"), " ".join(exc.messages))

        return wrapper

    return decorate


# --- endpoints -----------------------------------------------------------------------------------


def _api_root_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/taxii2/api/")


@endpoint("GET")
def discovery(request: HttpRequest, user: User, media_type: str) -> HttpResponse:
    root = _api_root_url(request)
    return respond(
        {
            "title": _("%(node)s TAXII server") % {"node": settings.MINGA_NODE_NAME},
            "description": _(
                "TAXII 2.1 server of a Minga node: the intelligence its access policy lets you read, "
                "and your organisations' inboxes."
            ),
            "contact": settings.MINGA_PUBLIC_URL,
            "default": root,
            "api_roots": [root],
        },
        media_type,
    )


@endpoint("GET")
def api_root(request: HttpRequest, user: User, media_type: str) -> HttpResponse:
    return respond(
        {
            "title": settings.MINGA_NODE_NAME,
            "description": _("The intelligence of this node, under its access policy."),
            "versions": [MEDIA_TAXII],
            "max_content_length": services.max_content_length(),
        },
        media_type,
    )


@endpoint("GET")
def collections(request: HttpRequest, user: User, media_type: str) -> HttpResponse:
    return respond({"collections": [c.as_resource() for c in services.collections_for(user)]}, media_type)


@endpoint("GET")
def collection(request: HttpRequest, user: User, media_type: str, collection_id: str) -> HttpResponse:
    return respond(services.get_collection(user, collection_id).as_resource(), media_type)


def _head(page: services.Page) -> dict[str, Any]:
    """The paging members every page of objects, manifest records or versions starts with."""
    return {"more": page.more, "next": page.next} if page.more else {"more": page.more}


def _envelope(page: services.Page, media_type: str) -> HttpResponse:
    # Written as text: the objects are stored as JSON already (see services.emitted_json).
    head = orjson.dumps(_head(page))
    if page.rows:
        objects = ",".join(services.emitted_json(raw, tlp) for _pk, tlp, raw in page.rows)
        body = head[:-1] + b',"objects":[' + objects.encode() + b"]}"
    else:
        body = head
    return _added_headers(HttpResponse(body, content_type=media_type), page)


@endpoint("GET", "POST", stix_too=True)
def objects(request: HttpRequest, user: User, media_type: str, collection_id: str) -> HttpResponse:
    found = services.get_collection(user, collection_id)
    if request.method == "POST":
        if media_type != MEDIA_TAXII:  # the answer is a status resource, a TAXII type only
            raise TaxiiError(406, _("Not acceptable"), _("This answer is %(type)s.") % {"type": MEDIA_TAXII})
        with _read_body(request) as body:
            if found.peer is not None:
                status = federation.receive_envelope(found.peer, body)
            else:
                status = services.add_objects(user, found, body)
        return respond(services.status_resource(status), MEDIA_TAXII, status=202)
    if found.peer is not None:
        filters = services.parse_filters(request.GET, default_version="all")
        result, emitted = federation.emitted_page(found.peer, federation.served(found.peer, filters), filters)
        envelope = federation.envelope_bytes(result, emitted, with_next=True)
        return _added_headers(HttpResponse(envelope, content_type=media_type), result)
    page = services.get_objects(user, found, services.parse_filters(request.GET))
    return _envelope(page, media_type)


@endpoint("GET", "DELETE", stix_too=True)
def object_detail(
    request: HttpRequest, user: User, media_type: str, collection_id: str, object_id: str
) -> HttpResponse:
    found = services.get_collection(user, collection_id)
    if request.method == "DELETE":
        filters = services.parse_filters(request.GET, default_version="all")
        services.delete_object(user, found, object_id, filters)
        return HttpResponse(status=200)
    page = services.get_objects(user, found, services.parse_filters(request.GET), stix_id=object_id)
    return _envelope(page, media_type)


@endpoint("GET")
def versions(
    request: HttpRequest, user: User, media_type: str, collection_id: str, object_id: str
) -> HttpResponse:
    found = services.get_collection(user, collection_id)
    filters = services.parse_filters(request.GET, default_version="all")
    page = services.get_versions(user, found, object_id, filters)
    body = _head(page)
    if page.rows:
        body["versions"] = [
            services.timestamp(services.version_of(modified, added)) for _pk, added, modified in page.rows
        ]
    return _added_headers(respond(body, media_type), page)


@endpoint("GET")
def manifest(request: HttpRequest, user: User, media_type: str, collection_id: str) -> HttpResponse:
    found = services.get_collection(user, collection_id)
    page = services.get_manifest(user, found, services.parse_filters(request.GET))
    body = _head(page)
    if page.rows:
        body["objects"] = [
            {
                "id": stix_id,
                "date_added": services.timestamp(added),
                "version": services.timestamp(services.version_of(modified, added)),
                "media_type": f"application/stix+json;version={spec_version}",
            }
            for _pk, added, stix_id, modified, spec_version in page.rows
        ]
    return _added_headers(respond(body, media_type), page)


@endpoint("GET")
def status(request: HttpRequest, user: User, media_type: str, status_id: str) -> HttpResponse:
    return respond(services.status_resource(services.get_status(user, status_id)), media_type)


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error(404, _("Not found"), _("There is no TAXII endpoint at this address."))


# --- the request body ----------------------------------------------------------------------------


class _Body:
    """The request body spooled to memory or a temporary file, within the API root's
    max_content_length: checked on Content-Length before reading, and while reading (the
    header may be absent or wrong)."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115

    def __enter__(self) -> IO[bytes]:
        try:
            return self._spool()
        except BaseException:
            self.file.close()
            raise

    def _spool(self) -> IO[bytes]:
        request, limit = self.request, services.max_content_length()
        kind, params = _media_type(request.META.get("CONTENT_TYPE", ""))
        if not _is_taxii_21(kind, params, stix_too=True):
            raise TaxiiError(
                415,
                _("Unsupported media type"),
                _("Send the envelope as %(type)s (got %(got)s).")
                % {"type": MEDIA_TAXII, "got": repr(kind) if kind else _("no content type")},
            )
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise TaxiiError(400, _("Bad request"), _("Content-Length is not a number.")) from None
        too_large = TaxiiError(
            413,
            _("Envelope too large"),
            _("This API root accepts envelopes of at most %(limit)d bytes; split it into several.")
            % {"limit": limit},
        )
        if declared > limit:
            raise too_large
        size = 0
        while True:
            piece = request.read(READ_CHUNK)
            if not piece:
                break
            size += len(piece)
            if size > limit:
                raise too_large
            self.file.write(piece)
        self.file.seek(0)
        return self.file

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _read_body(request: HttpRequest) -> _Body:
    return _Body(request)
