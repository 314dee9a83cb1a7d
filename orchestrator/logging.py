"""Log formatters: plain text (default) or one JSON object per line (`LOG_FORMAT=json`).

Both carry the correlation fields passed through `extra=` (`execution_id`, `job_id`, ...):
`logger.info("job claimed", extra={"execution_id": execution.pk, "job_id": job.pk})`.
This module lives inside the `orchestrator` package, so `import logging` elsewhere still gets the
standard library (absolute imports).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Correlation fields promoted to top-level keys, in this order, when a record carries them.
CONTEXT_FIELDS = ("execution_id", "job_id", "node_id", "attempt", "workflow", "agent", "queue")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None))
) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra=` fields, correlation fields first."""
    extras = {
        key: value
        for key, value in vars(record).items()
        if key not in STANDARD_ATTRS and not key.startswith("_")
    }
    ordered = {key: extras.pop(key) for key in CONTEXT_FIELDS if key in extras}
    ordered.update(sorted(extras.items()))
    return ordered


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", <extras...>, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, jsonable(value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [execution_id=... job_id=...]`."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **kwargs: Any):
        super().__init__(
            fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt, **kwargs
        )

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = [
            f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key)
        ]
        if not context:
            return text
        head, newline, tail = text.partition("\n")
        return f"{head} [{' '.join(context)}]{newline}{tail}"
