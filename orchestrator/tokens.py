"""Opaque bearer tokens: only a SHA-256 digest is stored, the raw value is shown once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class IssuedToken:
    raw: str
    prefix: str
    digest: str


def hash_token(raw: str) -> str:
    """Digest a raw token for storage and lookup (tokens are random, so no salt is needed)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(kind: str) -> IssuedToken:
    """Create a new random token like `sya_3f9c…`; `kind` is a short readable tag."""
    raw = f"sy{kind}_{secrets.token_urlsafe(32)}"
    return IssuedToken(raw=raw, prefix=raw[:12], digest=hash_token(raw))
