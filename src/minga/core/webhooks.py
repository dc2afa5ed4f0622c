"""Signed webhooks: how the node signs what it POSTs to a receiver, and how a receiver checks it.
Shared by every app that POSTs to a URL an organisation gave (the pipeline's digests, the
incidents' notifications through the directory's webhooks).

Each delivery is a POST of a JSON body with these headers:

* ``X-Minga-Timestamp``: the time of the attempt, in whole seconds since the Unix epoch;
* ``X-Minga-Signature``: ``sha256=`` and the hexadecimal HMAC-SHA256, keyed with the
  receiver's secret, of the timestamp, a full stop, and the raw body
  (``f"{timestamp}.".encode() + body``), so the timestamp is covered by the signature;
* ``X-Minga-Delivery``: the delivery's id, the same on every attempt of one delivery;
* ``X-Minga-Event``: what is delivered (``events.digest``...).

How a receiver verifies a delivery:

1. read the raw body as received (before parsing the JSON);
2. recompute ``hmac(secret, timestamp + "." + body, sha256)`` and compare it with the signature
   header in constant time (``hmac.compare_digest``);
3. refuse a timestamp more than five minutes from its own clock (a replayed request fails:
   changing the timestamp breaks the signature);
4. treat a delivery id it has seen already as a repeat (a retry after a lost answer).

``verify`` does the first three; in Python a receiver may copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "X-Minga-Signature"
TIMESTAMP_HEADER = "X-Minga-Timestamp"
DELIVERY_HEADER = "X-Minga-Delivery"
EVENT_HEADER = "X-Minga-Event"
TIMEOUT_SECONDS = 10.0


def new_secret() -> str:
    """A fresh signing secret (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


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
    """Whether a received delivery is authentic and fresh (see the module's docstring)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature or "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_url(url: str, field: str = "url") -> str:
    """An https URL (plain http only to this machine, for a receiver beside the node), without
    credentials; a ``ValidationError`` on ``field`` saying what is wrong otherwise."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:  # bad brackets, a port that is not a number
        host = ""
    if not host or parts.scheme not in ("http", "https") or len(url) > 500 or not url.isprintable():
        raise ValidationError({field: _("Give the webhook's full https URL (at most 500 characters).")})
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValidationError({field: _("A webhook must use https (plain http only to this machine).")})
    if parts.username or parts.password:
        raise ValidationError(
            {field: _("Put no user name or password in the URL: the signature authenticates.")}
        )
    return url


class DeliveryFailed(Exception):
    """The receiver could not be reached or did not answer 2xx."""


def check_destination(url: str) -> None:
    """Refuse (``DeliveryFailed``) a URL whose host resolves to a private, link-local or
    reserved address, unless MINGA_WEBHOOK_PRIVATE: an organisation's admin gives the URL, and
    must not make the node call into its own network (a cloud's metadata service, an internal
    admin page). This machine stays allowed: a receiver beside the node. Checked before each
    attempt, so a name that later resolves inward is refused then."""
    if settings.MINGA_WEBHOOK_PRIVATE:
        return
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryFailed(
            _("The host %(host)s cannot be resolved: %(error)s") % {"host": host, "error": exc}
        ) from None
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address)
        if not ip.is_global and not ip.is_loopback:
            raise DeliveryFailed(
                _(
                    "The host %(host)s is %(address)s, not a public address; the node's operator may "
                    "allow private ones (MINGA_WEBHOOK_PRIVATE)."
                )
                % {"host": host, "address": address}
            )


@dataclass(frozen=True)
class Delivered:
    status: int


def post(
    url: str,
    secret: str,
    body: bytes,
    *,
    delivery: str,
    event: str,
    timeout: float = TIMEOUT_SECONDS,
    now: float | None = None,
) -> Delivered:
    """POST ``body`` (JSON) to ``url``, signed with ``secret``; ``DeliveryFailed`` with the
    reason unless the receiver answers 2xx. Redirects are not followed (a signed body goes
    where it was sent or nowhere)."""
    check_destination(url)
    stamp = int(now if now is not None else time.time())
    request = urllib.request.Request(  # noqa: S310  (the scheme is checked by clean_url)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Minga-Webhook",
            SIGNATURE_HEADER: sign(secret, stamp, body),
            TIMESTAMP_HEADER: str(stamp),
            DELIVERY_HEADER: delivery,
            EVENT_HEADER: event,
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return Delivered(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(_("The receiver answered HTTP %(status)s.") % {"status": exc.code}) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(
            _("The receiver could not be reached: %(reason)s") % {"reason": reason}
        ) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
