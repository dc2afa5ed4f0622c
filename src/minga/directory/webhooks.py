"""An organisation's webhook: its secret, sealed at rest, and the checks of what its admins
give. The signing scheme, the URL rules and how a receiver verifies are the node's one scheme,
``minga.core.webhooks``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from minga.core import sealed
from minga.core.webhooks import (  # noqa: F401  (the scheme, as the incidents' delivery uses it)
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryFailed,
    check_destination,
    clean_url,
    new_secret,
    post,
    sign,
    verify,
)

SEAL_PURPOSE = "directory.webhook"
MIN_SECRET = 24
MAX_SECRET = 200


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
