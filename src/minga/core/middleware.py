"""Request-wide guards and preferences."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import translation
from django.utils.translation import gettext as _


class RequestSizeLimitMiddleware:
    """Refuse an oversized body before anything reads it: 413 with a clear message."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
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
