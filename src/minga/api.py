"""The REST API root: ``/api/v1/``. Authentication, error bodies and routers of every app."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser
from ninja.security import HttpBasicAuth, HttpBearer, django_auth

from minga.core import tokens


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = tokens.user_for_token(token)
        if user is not None:
            request.user = user
        return user


class BasicToken(HttpBasicAuth):
    """HTTP Basic with the token as password, for clients (TAXII) that only speak Basic."""

    def authenticate(self, request: HttpRequest, username: str, password: str) -> Any:
        # The token alone authenticates; clients may put any user name beside it.
        user = tokens.user_for_token(password)
        if user is not None:
            request.user = user
        return user


class UnacceptableInput(Exception):
    """Input refused before any schema sees it (a body that is not JSON, a NUL character), with
    the status and message to answer."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict[str, Any]:
        if not self.field:
            return {"detail": self.message}
        return {
            "detail": _("Invalid input: %(summary)s") % {"summary": f"{self.field}: {self.message}"},
            "errors": [{"field": self.field, "message": self.message}],
        }


NUL = "\x00"


def _nul_location(data: Any) -> str | None:
    """Where a NUL character hides in parsed JSON (no database text field can hold one), or None.
    Iterative: the document may be nested as deep as the JSON parser allows."""
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                return where or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if NUL in key:
                    return where or "body"
                pending.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            pending.extend((f"{where}.{i}" if where else str(i), item) for i, item in enumerate(value))
    return None


class JsonParser(Parser):
    """Bodies are JSON in UTF-8, labelled as JSON: anything else is refused with a clear message
    rather than guessed at. Text with NUL characters is refused in bodies and query strings."""

    def parse_body(self, request: HttpRequest) -> Any:
        content_type = request.content_type or ""
        if content_type != "application/json" and not (
            content_type.startswith("application/") and content_type.endswith("+json")
        ):
            raise UnacceptableInput(
                415,
                _("Send the body as JSON with 'Content-Type: application/json' (got %(type)s).")
                % {"type": repr(content_type) if content_type else _("no content type")},
            )
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise UnacceptableInput(400, _("The request body is not valid UTF-8.")) from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and numbers too long to convert.
            raise UnacceptableInput(
                400, _("The request body is not valid JSON: %(error)s") % {"error": exc}
            ) from None
        where = _nul_location(data)
        if where is not None:
            raise UnacceptableInput(422, _("Text may not contain NUL characters."), field=where)
        return data

    def parse_querydict(self, data: Any, list_fields: list[str], request: HttpRequest) -> dict[str, Any]:
        for key, values in data.lists():
            if NUL in key or any(NUL in value for value in values):
                raise UnacceptableInput(
                    422, _("Text may not contain NUL characters."), field=key.replace(NUL, "")
                )
        return super().parse_querydict(data, list_fields, request)


api = NinjaAPI(
    title="Minga API",
    version="1",
    description=(
        "REST API of a Minga node. Authenticate with an API token "
        "(`Authorization: Bearer mng_…`), or with a signed-in browser session."
    ),
    urls_namespace="api",
    auth=[BearerToken(), BasicToken(), django_auth],
    parser=JsonParser(),
)


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "payload")]
    return ".".join(parts) or "body"


@api.exception_handler(NinjaValidationError)
def _invalid_input(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = [{"field": _field_path(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return api.create_response(
        request,
        {"detail": _("Invalid input: %(summary)s") % {"summary": summary}, "errors": errors},
        status=422,
    )


@api.exception_handler(DjangoValidationError)
def _rejected(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    if hasattr(exc, "error_dict"):
        errors = [{"field": f, "message": str(m)} for f, msgs in exc.message_dict.items() for m in msgs]
    else:
        errors = [{"field": "", "message": str(m)} for m in exc.messages]
    summary = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
    return api.create_response(request, {"detail": summary, "errors": errors}, status=400)


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    message = str(exc) or _("You are not allowed to do this.")
    return api.create_response(request, {"detail": message}, status=403)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {
            "detail": _(
                "Authentication required: send a valid, unexpired API token as "
                "'Authorization: Bearer <token>'."
            )
        },
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="minga"'
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": _("Not found.")}, status=404)


@api.exception_handler(UnacceptableInput)
def _unacceptable(request: HttpRequest, exc: UnacceptableInput) -> HttpResponse:
    return api.create_response(request, exc.body(), status=exc.status)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # django-ninja wraps whatever the body parser raises in "Cannot parse request body": say why.
    if isinstance(exc.__cause__, UnacceptableInput):
        return _unacceptable(request, exc.__cause__)
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


api.add_router("/", "minga.core.api.router")
api.add_router("/directory", "minga.directory.api.router")
api.add_router("/intel", "minga.intel.api.router")
api.add_router("/pipeline", "minga.pipeline.api.router")
api.add_router("/incidents", "minga.incidents.api.router")
api.add_router("/assistance", "minga.assistance.api.router")
api.add_router("/federation", "minga.taxii.api.router")
