"""Shared arithmetic of the benchmark runners: timestamps from the API and percentiles."""

from __future__ import annotations

from datetime import datetime


def parse_time(value: str) -> datetime:
    """An API timestamp (ISO 8601, `Z` or an offset) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
