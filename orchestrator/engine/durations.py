"""Human-friendly durations (`30s`, `5m`, `1h30m`, `250ms`) as used in workflow definitions."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_FULL = re.compile(rf"(?:(?:{_NUMBER})\s*(?:ms|s|m|h|d)\s*)+")
_PLAIN = re.compile(rf"(?:{_NUMBER})")


def parse_duration(value: str | int | float) -> float:
    """Return `value` in seconds.

    Numbers are seconds; strings combine `<number><unit>` parts with units ms, s, m, h, d
    (`"1h 30m"`, `"1.5h"`, `"250ms"`); a bare numeric string is seconds. Negative, empty,
    non-finite or malformed values raise `ValueError`.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected a number of seconds or e.g. '30s'")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"invalid duration {value!r}: must be finite")
        if seconds < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return seconds
    if not isinstance(value, str):
        raise ValueError(
            f"invalid duration of type {type(value).__name__}: expected a number or a string"
        )
    text = value.strip()
    if not text:
        raise ValueError("invalid duration '': empty")
    if text.startswith("-"):
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    if _PLAIN.fullmatch(text):
        return float(text)
    if not _FULL.fullmatch(text):
        raise ValueError(
            f"invalid duration {value!r}: expected e.g. '30s', '5m', '1h30m', '250ms' or '1d'"
        )
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
