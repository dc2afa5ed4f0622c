"""Secrets the node must use again (a TOTP seed, a peer's credential) cannot be hashed: they are
sealed with Fernet under a key derived from the node's secret key and a purpose, so a secret
sealed for one purpose does not open as another."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet(purpose: str) -> Fernet:
    digest = hashlib.sha256(f"{purpose}:".encode() + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str, purpose: str) -> str:
    return _fernet(purpose).encrypt(secret.encode()).decode()


def unseal(stored: str, purpose: str) -> str | None:
    """The secret, or None when ``stored`` was sealed under another key or purpose."""
    try:
        return _fernet(purpose).decrypt(stored.encode()).decode()
    except InvalidToken:
        return None
