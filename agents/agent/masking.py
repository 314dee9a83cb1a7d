"""Secret masking for everything that leaves the agent (live chunks and the final report).

A secret leaks just as well base64- or percent-encoded (``Authorization: Basic …``, a token in
a logged URL), so each value is masked in those forms too. Base64 is position-dependent: a
secret embedded in a longer encoded string shows up as one of three alignments, and only the
characters that depend on the secret alone are stable, so those are what is matched.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# Encoded forms shorter than this would match ordinary text far too often (a 2-byte secret's
# base64 is 2 characters); the raw value is always masked whatever its length.
MIN_ENCODED_FORM = 6


def _base64_forms(raw: bytes) -> set[str]:
    # The exact encoding of the value alone (padding included) plus, for each alignment, the
    # characters that do not depend on neighbouring bytes.
    forms = {base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    for offset in range(3):
        start = math.ceil(8 * offset / 6)
        end = (8 * (offset + len(raw))) // 6
        padded = b"\0" * offset + raw
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(padded).decode("ascii")[start:end])
    return forms


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every string to mask for ``secrets``, longest first so overlapping forms mask fully."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.add(secret)
        encoded = _base64_forms(secret.encode())
        encoded |= {quote(secret, safe=""), quote_plus(secret, safe="")}
        forms |= {form for form in encoded if len(form) >= MIN_ENCODED_FORM}
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


def mask_text(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every secret (and its encoded forms) in strings, recursively, by ``***``."""
    forms = secret_forms(secrets)
    return _mask_value(value, forms) if forms else value


def _mask_value(value: Any, forms: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return mask_text(value, forms)
    if isinstance(value, dict):
        return {key: _mask_value(item, forms) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_value(item, forms) for item in value]
    return value


class StreamMasker:
    """Masks a text stream that arrives in pieces, so a secret split across two reads is caught.

    The last ``len(longest form) - 1`` characters are held back until more text (or the end)
    arrives: any occurrence that is not complete yet must start inside that tail.
    """

    def __init__(self, forms: tuple[str, ...]):
        self.forms = forms
        self._keep = max((len(form) for form in forms), default=1) - 1
        self._carry = ""

    def feed(self, text: str) -> str:
        """Return the part of the stream that is now safe to emit."""
        if not self.forms:
            return text
        masked = mask_text(self._carry + text, self.forms)
        if self._keep <= 0:
            self._carry = ""
            return masked
        self._carry = masked[-self._keep :]
        return masked[: -self._keep]

    def finish(self) -> str:
        """The held-back tail, at the end of the stream."""
        rest, self._carry = self._carry, ""
        return mask_text(rest, self.forms)
