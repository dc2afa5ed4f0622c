"""OpenPGP (RFC 4880 / RFC 9580) for contacts' keys: de-armour a public key and compute its
primary key's fingerprint, so a fingerprint typed by a person can be checked against the key
they uploaded (done here, by hand, for v4 and v6 keys); and encrypt a message to a key that can
encrypt (``encrypt``, with PGPy), for the e-mail sent to a 24/7 contact."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from typing import Any

from django.utils.translation import gettext as _

PUBLIC_KEY_TAG = 6
_ARMOUR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\s*\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL
)


def dearmour(text: str) -> bytes:
    match = _ARMOUR.search(text)
    if match is None:
        raise ValueError(_("This is not an ASCII-armoured OpenPGP public key block."))
    lines = match.group("body").strip().splitlines()
    # Armour headers ("Comment: …") end at the first empty line, if there are any.
    if any(":" in line for line in lines[:1]) and "" in [line.strip() for line in lines]:
        lines = lines[[line.strip() for line in lines].index("") + 1 :]
    data = [line.strip() for line in lines if line.strip() and not line.startswith("=")]
    try:
        return base64.b64decode("".join(data), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(_("The key block's base64 is damaged.")) from exc


def _first_packet(data: bytes) -> tuple[int, bytes]:
    if not data or not data[0] & 0x80:
        raise ValueError(_("The key block does not start with an OpenPGP packet."))
    header = data[0]
    if header & 0x40:  # new format
        tag, first = header & 0x3F, data[1]
        if first < 192:
            length, offset = first, 2
        elif first < 224:
            length, offset = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, offset = int.from_bytes(data[2:6], "big"), 6
        else:
            raise ValueError(_("Partial-length key packets are not supported."))
    else:  # old format
        tag, length_type = (header >> 2) & 0x0F, header & 0x03
        size = {0: 1, 1: 2, 2: 4}.get(length_type)
        if size is None:
            raise ValueError(_("Indeterminate-length key packets are not supported."))
        length, offset = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    body = data[offset : offset + length]
    if len(body) != length:
        raise ValueError(_("The key block is truncated."))
    return tag, body


def fingerprint(armoured_key: str) -> str:
    """The primary key's fingerprint in upper-case hex (40 digits for v4, 64 for v6)."""
    tag, body = _first_packet(dearmour(armoured_key))
    if tag != PUBLIC_KEY_TAG or not body:
        raise ValueError(_("The first packet is not a public key."))
    version = body[0]
    if version == 4:
        return (
            hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False)
            .hexdigest()
            .upper()
        )
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise ValueError(
        _("OpenPGP key version %(version)d is not supported (use v4 or v6).") % {"version": version}
    )


def normalise_fingerprint(text: str) -> str:
    value = re.sub(r"[\s:]", "", text).upper().removeprefix("0X")
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", value):
        raise ValueError(_("A fingerprint has 40 (v4) or 64 (v6) hexadecimal digits."))
    return value


class CannotEncrypt(ValueError):
    """The key cannot be used to encrypt (signing only, expired, or not readable)."""


def _load(armoured_key: str) -> Any:
    import pgpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PGPy's deprecation warnings about its own imports
        try:
            key, _others = pgpy.PGPKey.from_blob(armoured_key)
        except Exception as exc:  # PGPy raises many kinds on a damaged block
            raise CannotEncrypt(_("The key cannot be read: %(error)s") % {"error": exc}) from exc
    return key


def can_encrypt(armoured_key: str) -> bool:
    """Whether the key (or one of its subkeys) may encrypt and has not expired."""
    try:
        encrypt(armoured_key, "")
    except CannotEncrypt:
        return False
    return True


def encrypt(armoured_key: str, text: str) -> str:
    """``text`` encrypted to the key (PGPy picks the subkey flagged for encryption), as an
    ASCII-armoured OpenPGP message. Raises ``CannotEncrypt`` when the key cannot encrypt."""
    import pgpy

    key = _load(armoured_key)
    if key.is_expired:
        raise CannotEncrypt(_("The OpenPGP key has expired."))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return str(key.encrypt(pgpy.PGPMessage.new(text)))
        except Exception as exc:  # PGPy says "does not have the required usage flag" and the like
            raise CannotEncrypt(
                _("The OpenPGP key cannot encrypt (it may be for signing only): %(error)s") % {"error": exc}
            ) from exc
