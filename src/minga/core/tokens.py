"""API tokens: generated once, shown once, stored as a SHA-256 hash.

A token is 256 bits of randomness, so a fast hash is enough (no offline guessing is
possible), and lookup by hash is a single indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from minga.core.models import ApiToken, User

TOKEN_PREFIX = "mng_"  # noqa: S105  (a marker, not a secret)
# Writing last_used_at on every request would turn each API read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def generate() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def display_prefix(raw: str) -> str:
    return raw[: len(TOKEN_PREFIX) + 6]


def user_for_token(raw: str | None) -> User | None:
    """The active user a presented token belongs to, or None if it is unknown, expired or
    revoked."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw), revoked_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
