"""Test helpers every capability reuses: the standard proof that a user outside an object's
recipients cannot see it through any interface (queryset, object check, UI and API URLs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.test import Client

from minga.core import access
from minga.core.models import SharedObject, User


def assert_invisible_to(
    user: User, obj: SharedObject, *, urls: Iterable[str] = (), headers: dict[str, str] | None = None
) -> None:
    """Fail unless ``user`` is denied ``obj`` everywhere.

    Each URL (a detail page, a list, an API endpoint, an export) must answer 403/404, or a page
    or document that does not mention the object's UUID. ``headers`` (e.g. a Bearer token) are
    sent instead of a session when given.
    """
    model: Any = type(obj)
    assert not model.objects.visible_to(user).filter(pk=obj.pk).exists(), "the queryset filter admits it"
    assert not access.can_read(user, obj), "the object check admits it"
    client = Client()
    if headers is None:
        client.force_login(user)
    for url in urls:
        response = client.get(url, headers=headers or {})
        assert response.status_code < 500, f"{url} failed with {response.status_code}"
        if response.status_code in (401, 403, 404):
            continue
        assert str(obj.uuid) not in response.content.decode(errors="replace"), f"{url} reveals the object"
