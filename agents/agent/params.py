"""Checks for the rendered ``params`` of a claim.

The server validates params when a definition is saved, but templates are rendered at claim
time, so types can still be off (a template that rendered to a string, a missing value). Each
helper raises ``ParamError`` with a message naming the parameter, which becomes the job's error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_FULL = re.compile(rf"(?:(?:{_NUMBER})\s*(?:ms|s|m|h|d)\s*)+")


class ParamError(ValueError):
    """A parameter is missing or has the wrong type."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``30s``, ``1m30s``, ``250ms`` (the server's
    syntax for durations; duplicated here because the agent must not import the server)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (text := value.strip()):
        try:
            seconds = float(text)
        except ValueError:
            if not _FULL.fullmatch(text):
                raise ValueError(f"invalid duration {value!r}: expected e.g. '30s'") from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    else:
        raise ValueError(f"invalid duration {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}")
    return seconds


def optional_str(params: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ParamError(f"params.{name} must be a string")
    return value


def required_str(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ParamError(f"params.{name} is required and must be a non-empty string")
    return value


def optional_bool(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ParamError(f"params.{name} must be a boolean")


def optional_int(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ParamError(f"params.{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ParamError(f"params.{name} must be an integer") from None


def optional_duration(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ParamError(f"params.{name}: {exc}") from None
    return seconds or default


def string_list(params: Mapping[str, Any], name: str) -> list[str]:
    """A list of strings; a single string counts as a one-element list (as on the server)."""
    value = params.get(name)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(
        isinstance(item, str | int | float) and not isinstance(item, bool) for item in items
    ):
        raise ParamError(f"params.{name} must be a string or a list of strings")
    return [str(item) for item in items]


def string_map(params: Mapping[str, Any], name: str) -> dict[str, str]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParamError(f"params.{name} must be an object of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float):
            raise ParamError(f"params.{name}.{key} must be a string")
        result[str(key)] = str(item)
    return result
