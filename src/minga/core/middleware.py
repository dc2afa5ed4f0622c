"""Request-wide guards and preferences."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


class RequestSizeLimitMiddleware:
    """Refuse an oversized body before anything reads it: 413 with a clear message. The TAXII
    server (``/taxii2/``) has a limit of its own, which it announces and enforces itself."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/taxii2/"):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": _("Content-Length is not a number.")}, status=400)
        limit = settings.MINGA_MAX_REQUEST_BYTES
        if length > limit:
            return JsonResponse(
                {
                    "detail": _("The request body is %(size)d bytes; this node accepts at most %(limit)d.")
                    % {"size": length, "limit": limit}
                },
                status=413,
            )
        return self.get_response(request)


class UserLanguageMiddleware:
    """A signed-in user's chosen language wins over the browser's, unless the language
    switcher has just set one for this session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        preferred = getattr(user, "preferred_language", "") if user is not None else ""
        if preferred and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
            translation.activate(preferred)
            request.LANGUAGE_CODE = preferred
        return self.get_response(request)


class RejectNulMiddleware:
    """Refuse text with NUL characters in the UI's query strings and forms: PostgreSQL cannot
    store them, and no person types one. (The API checks its own inputs, field by field.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(("/api/", "/taxii2/")):
            form = request.POST if request.method == "POST" else QueryDict()
            for data in (request.GET, form):
                if any("\x00" in value for _key, values in data.lists() for value in values):
                    return render(
                        request,
                        "core/error.html",
                        {"title": _("Bad request"), "message": _("Text may not contain NUL characters.")},
                        status=400,
                    )
        return self.get_response(request)


class ApiErrorBodyMiddleware:
    """Errors Django or django-ninja answer before the API's own handlers run (an undeclared
    method, an unknown path) still get a JSON body under /api/, like every other API error."""

    MESSAGES = {404: gettext_lazy("Not found."), 405: gettext_lazy("This method is not allowed here.")}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code in self.MESSAGES
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            replacement = JsonResponse(
                {"detail": str(self.MESSAGES[response.status_code])}, status=response.status_code
            )
            if response.has_header("Allow"):
                replacement["Allow"] = response["Allow"]
            return replacement
        return response
