"""The REST API root: ``/api/v1/``. Authentication, error bodies and routers of every app."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
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


api = NinjaAPI(
    title="Minga API",
    version="1",
    description=(
        "REST API of a Minga node. Authenticate with an API token "
        "(`Authorization: Bearer mng_…`), or with a signed-in browser session."
    ),
    urls_namespace="api",
    auth=[BearerToken(), BasicToken(), django_auth],
)


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "payload")]
    return ".".join(parts) or "body"


@api.exception_handler(NinjaValidationError)
def _invalid_input(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = [{"field": _field_path(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return api.create_response(
        request, {"detail": _("Invalid input: %(summary)s") % {"summary": summary}, "errors": errors},
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
        {"detail": _("Authentication required: send a valid, unexpired API token as "
                     "'Authorization: Bearer <token>'.")},
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="minga"'
    return response


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, {"detail": _("Not found.")}, status=404)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


api.add_router("/", "minga.core.api.router")
