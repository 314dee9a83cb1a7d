"""Encryption of secret values at rest (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from `SWITCHYARD_SECRETS_KEYS` (comma-separated Fernet keys, newest first, so a key
can be rotated: decrypt with any, encrypt with the first). Without it, a key is derived from
`SECRET_KEY`, which is fine for development but ties secrets to that key.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretDecryptionError(Exception):
    """A stored value cannot be decrypted with any configured key."""


@cache
def box() -> MultiFernet:
    keys = [key.strip() for key in settings.SWITCHYARD_SECRETS_KEYS if key.strip()]
    if not keys:
        digest = hashlib.sha256(b"switchyard-secrets:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(value: str) -> str:
    return box().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return box().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise SecretDecryptionError("cannot decrypt secret: wrong or rotated-out key") from error
