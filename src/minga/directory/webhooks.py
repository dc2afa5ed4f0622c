"""Signed webhooks: how the node signs what it POSTs to an organisation's webhook, and how a
receiver checks it.

Each delivery is a POST of a JSON body with these headers:

* ``X-Minga-Timestamp``: the time of the attempt, in whole seconds since the Unix epoch;
* ``X-Minga-Signature``: ``sha256=`` and the hexadecimal HMAC-SHA256, keyed with the
  organisation's webhook secret, of the timestamp, a full stop, and the raw body
  (``f"{timestamp}.".encode() + body``);
* ``X-Minga-Delivery``: the notification's id, the same on every attempt of one delivery;
* ``X-Minga-Event``: what happened (``participant_added``, ``task_assigned``...).

A receiver recomputes the HMAC over the timestamp header, a full stop and the body exactly as
received (before parsing the JSON), compares it with the signature in constant time, refuses a
timestamp more than five minutes from its own clock (a replayed request fails: changing the
timestamp breaks the signature), and treats a delivery id it has seen as a repeat (a retry after
a lost answer). ``verify`` does all but the last.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from minga.core import sealed

SEAL_PURPOSE = "directory.webhook"
MIN_SECRET = 24
MAX_SECRET = 200
TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-Minga-Signature"
TIMESTAMP_HEADER = "X-Minga-Timestamp"
DELIVERY_HEADER = "X-Minga-Delivery"
EVENT_HEADER = "X-Minga-Event"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def seal_secret(secret: str) -> str:
    return sealed.seal(secret, SEAL_PURPOSE)


def unseal_secret(stored: str) -> str | None:
    """The secret, or None when it was sealed under another node key (set it again)."""
    return sealed.unseal(stored, SEAL_PURPOSE)


def clean_secret(secret: str) -> str:
    secret = secret.strip()
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
        raise ValidationError(
            {
                "secret": _("A webhook secret has %(min)d to %(max)d printable characters.")
                % {"min": MIN_SECRET, "max": MAX_SECRET}
            }
        )
    return secret


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_url(url: str) -> str:
    """An https URL (plain http only to this machine, for a receiver beside the node)."""
    url = url.strip()
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or len(url) > 500:
        raise ValidationError({"url": _("Give the webhook's full https URL (at most 500 characters).")})
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValidationError({"url": _("A webhook must use https (plain http only to this machine).")})
    if parts.username or parts.password:
        raise ValidationError(
            {"url": _("Put no user name or password in the URL: the signature authenticates.")}
        )
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Minga-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    signature: str,
    timestamp: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether a received webhook is authentic and fresh (see the module's docstring)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)
