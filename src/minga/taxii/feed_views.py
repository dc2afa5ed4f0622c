"""The MISP feed of what a subscriber may read, under ``/federation/misp-feed/``: thin views over
``minga.taxii.mispfeed``.

A MISP instance subscribes with the feed's URL and a custom header
``Authorization: Bearer <API token>`` (the token is also accepted as the password of HTTP
Basic). Without a valid token every file answers 401; an event that is not in the token user's
feed answers 404, whether it exists or not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from minga.core.models import User
from minga.taxii import mispfeed
from minga.taxii.views import authenticate

View = Callable[..., HttpResponse | StreamingHttpResponse]


def _message(status: int, message: str) -> HttpResponse:
    return HttpResponse(orjson.dumps({"message": message}), content_type=mispfeed.JSON, status=status)


def feed_endpoint(view: Callable[..., HttpResponse | StreamingHttpResponse]) -> View:
    """GET (and HEAD) only, with an API token; the user is passed to the view."""

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse | StreamingHttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = _message(405, _("A MISP feed is read with GET."))
            response["Allow"] = "GET, HEAD"
            return response
        user = authenticate(request)
        if user is None:
            response = _message(
                401, _("Send an API token as the header Authorization: Bearer <token> to read this feed.")
            )
            response["WWW-Authenticate"] = 'Bearer realm="minga", Basic realm="minga"'
            return response
        return view(request, user, *args, **kwargs)

    return wrapped


@feed_endpoint
def manifest(request: HttpRequest, user: User) -> HttpResponse:
    return HttpResponse(orjson.dumps(mispfeed.manifest(user)), content_type=mispfeed.JSON)


@feed_endpoint
def hashes(request: HttpRequest, user: User) -> StreamingHttpResponse:
    return StreamingHttpResponse(mispfeed.hashes(user), content_type="text/csv; charset=utf-8")


@feed_endpoint
def event(request: HttpRequest, user: User, event_uuid: str) -> HttpResponse:
    try:
        document = mispfeed.event_document(user, str(event_uuid))
    except mispfeed.NotInFeed:
        return _message(404, _("There is no such event in this feed."))
    return HttpResponse(document, content_type=mispfeed.JSON)
