"""TOTP second factor. The shared secret must be usable to check codes, so it cannot be
hashed: it is encrypted with a key derived from the node's secret key."""

from __future__ import annotations

import hmac
import time

import pyotp
import segno
from django.conf import settings

from minga.core import sealed

ISSUER = "Minga"
PURPOSE = "minga-totp"


def new_secret() -> str:
    return pyotp.random_base32()


def encrypt(secret: str) -> str:
    return sealed.seal(secret, PURPOSE)


def decrypt(stored: str) -> str | None:
    return sealed.unseal(stored, PURPOSE)


def matching_step(secret: str, code: str) -> int | None:
    """The time step (current, previous or next, for clock drift) whose code is ``code``."""
    code = "".join(code.split())
    if not code.isdigit() or len(code) != 6:
        return None
    generator = pyotp.TOTP(secret)
    now = time.time()
    for drift in (0, -1, 1):
        moment = now + drift * generator.interval
        if hmac.compare_digest(generator.at(moment), code):
            return int(moment // generator.interval)
    return None


def provisioning_uri(secret: str, account: str) -> str:
    issuer = f"{ISSUER} ({settings.MINGA_NODE_NAME})"
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """An inline SVG of the provisioning QR code: nothing leaves the node to draw it."""
    return segno.make(uri, error="m").svg_inline(scale=4)
