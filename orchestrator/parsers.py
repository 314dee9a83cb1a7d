"""The API's JSON parser: refuses strings PostgreSQL cannot store (NUL, lone UTF-16 surrogates
such as `"\\ud800"`) with a 400 naming the field path, instead of a 500 when the row is saved."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from orchestrator.api_errors import PathError, join_path
from orchestrator.unstorable import MESSAGE, UNSTORABLE


def unstorable_paths(value: Any, path: str = "") -> list[str]:
    """Field paths of every string (or key) in `value` that PostgreSQL refuses."""
    if isinstance(value, str):
        return [path] if UNSTORABLE.search(value) else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_path = join_path(path, UNSTORABLE.sub("\ufffd", str(key)))
            if UNSTORABLE.search(str(key)):
                found.append(key_path)
            found.extend(unstorable_paths(item, key_path))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(unstorable_paths(item, f"{path}[{index}]"))
    return found


class StorableJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            paths = unstorable_paths(data)
        except RecursionError as error:
            raise ParseError("JSON is nested too deeply") from error
        if paths:
            raise PathError([(path, MESSAGE) for path in paths[:50]])
        return data


def replace_unstorable(value: Any) -> Any:
    """`value` with every NUL and lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {replace_unstorable(key): replace_unstorable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_unstorable(item) for item in value]
    return value


class SanitisingJSONParser(JSONParser):
    """For the agent protocol: job output is data, not input to validate, so a NUL printed by a
    job is shown as U+FFFD rather than refusing (and so losing) the chunk."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            return replace_unstorable(data)
        except RecursionError as error:
            raise ParseError("JSON is nested too deeply") from error
