"""Workflow definitions: parse YAML/JSON, validate everything at once, build immutable specs.

Validation collects every problem as a `ValidationIssue` (a path such as `nodes[2].on.success`
plus a reason) and raises them together in one `DefinitionError`, so an editor can show them all.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import math
import re
import zoneinfo
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml

from .durations import parse_duration
from .templates import check_expression, check_syntax, is_template

__all__ = [
    "ACTION_TYPES",
    "EDGES_BY_TYPE",
    "EDGE_KINDS",
    "INPUT_TYPES",
    "MISFIRE_POLICIES",
    "NODE_TYPES",
    "TRIGGER_TYPES",
    "ActionSchema",
    "DefinitionError",
    "InputSpec",
    "NodeSpec",
    "ParamSpec",
    "RetryPolicy",
    "ValidationIssue",
    "WorkflowSpec",
    "coerce_inputs",
    "load_definition",
    "register_action",
    "trigger_secret_name",
]

NODE_TYPES = ("action", "join", "approval", "condition", "wait", "workflow")
EDGE_KINDS = ("success", "error", "approved", "rejected", "true", "false", "always")
EDGES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "action": ("success", "error", "always"),
    "workflow": ("success", "error", "always"),
    "wait": ("success", "error", "always"),
    "join": ("success", "always"),
    "condition": ("true", "false", "always"),
    "approval": ("approved", "rejected", "always"),
}
INPUT_TYPES = ("string", "integer", "number", "boolean", "object", "array")
TRIGGER_TYPES = ("manual", "webhook", "cron", "event")
MISFIRE_POLICIES = ("skip", "run_once")
_TRIGGER_COMMON_KEYS = ("type", "name", "description", "inputs")
_TRIGGER_KEYS: dict[str, tuple[str, ...]] = {
    "manual": _TRIGGER_COMMON_KEYS,
    "webhook": (*_TRIGGER_COMMON_KEYS, "secret", "secret_previous", "if"),
    "cron": (*_TRIGGER_COMMON_KEYS, "cron", "timezone", "misfire"),
    "event": (*_TRIGGER_COMMON_KEYS, "event", "source", "if"),
}
_TRIGGER_SECRET = re.compile(r"\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")


def trigger_secret_name(value: Any) -> str | None:
    """The secret name in a webhook trigger's `secret: "{{ secrets.name }}"`, else None."""
    if not isinstance(value, str):
        return None
    match = _TRIGGER_SECRET.fullmatch(value.strip())
    return match.group(1) if match else None


_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_LEVEL_KEYS = (
    "slug",
    "name",
    "description",
    "inputs",
    "vars",
    "timeout",
    "nodes",
    "outputs",
    "triggers",
    "keep",
)
_KEEP_KEYS = ("days", "count")
_INPUT_KEYS = ("type", "required", "default", "description", "enum")
_RETRY_KEYS = ("max", "delay", "backoff", "max_delay")
_COMMON_NODE_KEYS = ("id", "type", "name", "description", "on", "wait_for")
_NODE_KEYS: dict[str, tuple[str, ...]] = {
    "action": (
        "action",
        "with",
        "pool",
        "agent",
        "labels",
        "timeout",
        "retries",
        "run_if",
        "assert",
        "outputs",
    ),
    "approval": (
        "message",
        "approvers",
        "quorum",
        "timeout",
        "allow_self_approval",
        "run_if",
        "escalate",
        "context",
        "notify",
    ),
    "condition": ("if", "run_if"),
    "join": (),
    "wait": ("duration", "run_if"),
    "workflow": ("workflow", "with", "timeout", "retries", "run_if"),
}
_EXPRESSION_KEYS = frozenset({"run_if", "if", "assert"})
_JSONPATH_START = ("$", "@")


# -- public data types ----------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in a definition: where (`nodes[2].on.success`) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionError(Exception):
    """A definition (or a set of inputs) failed validation; `issues` lists every problem."""

    def __init__(self, issues: Iterable[ValidationIssue]) -> None:
        self.issues: list[ValidationIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "; ".join(str(issue) for issue in self.issues) or "invalid definition"


@dataclass(frozen=True)
class InputSpec:
    """A declared workflow input. `default` is None when there is none."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    enum: tuple | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failed node up to `max` more times, waiting `delay * backoff**n` (capped)."""

    max: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 = first retry)."""
        delay = self.delay * self.backoff ** max(attempt - 1, 0)
        return min(delay, self.max_delay) if self.max_delay is not None else delay


@dataclass(frozen=True)
class NodeSpec:
    """One validated node. Template strings are kept unrendered; `raw` is the node as written.

    `timeout` is None for no limit (a written `0` also means none). `duration` is set for wait
    nodes only.
    """

    id: str
    type: str
    action: str | None = None
    params: dict = field(default_factory=dict)
    pool: str | None = None
    agent: str | None = None
    timeout: float | None = None
    retries: RetryPolicy | None = None
    on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    wait_for: str = "all"
    run_if: str | None = None
    condition: str | None = None
    raw: dict = field(default_factory=dict)
    duration: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    assertions: tuple[str, ...] = ()
    extract: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Graph:
    """Adjacency precomputed once per spec for the validator's queries and the planner."""

    order: tuple[str, ...]
    index: dict[str, int]
    predecessors: dict[str, tuple[tuple[str, str], ...]]
    entry: tuple[str, ...]
    topological: tuple[str, ...]
    acyclic: bool


@dataclass(frozen=True)
class WorkflowSpec:
    """A validated workflow definition; `raw` is its normalised JSON-serialisable form."""

    slug: str
    name: str
    description: str = ""
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    vars: dict = field(default_factory=dict)
    timeout: float | None = None
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    triggers: tuple[dict, ...] = ()
    raw: dict = field(default_factory=dict)
    # Retention of this workflow's finished runs, replacing the global policy: {days, count}.
    keep: dict[str, int] | None = None

    @cached_property
    def _graph(self) -> _Graph:
        return _build_graph({node_id: node.on for node_id, node in self.nodes.items()})

    def predecessors(self, node_id: str) -> tuple[tuple[str, str], ...]:
        """`(source id, edge kind)` pairs of the edges into `node_id`, in definition order."""
        return self._graph.predecessors[node_id]

    def entry_nodes(self) -> tuple[str, ...]:
        """Nodes without an incoming edge, in definition order."""
        return self._graph.entry


def _build_graph(edges: Mapping[str, Mapping[str, tuple[str, ...]]]) -> _Graph:
    """`edges` maps each node id, in definition order, to its `on:` mapping."""
    order = tuple(edges)
    index = {node_id: i for i, node_id in enumerate(order)}
    incoming: dict[str, list[tuple[str, str]]] = {node_id: [] for node_id in order}
    successors: dict[str, list[str]] = {node_id: [] for node_id in order}
    for source, on in edges.items():
        for kind, targets in on.items():
            for target in targets:
                if target in incoming:
                    incoming[target].append((source, kind))
                    successors[source].append(target)
    entry = tuple(node_id for node_id in order if not incoming[node_id])
    in_degree = {node_id: len({src for src, _ in incoming[node_id]}) for node_id in order}
    ready = deque(entry)
    topological: list[str] = []
    while ready:
        node_id = ready.popleft()
        topological.append(node_id)
        for target in dict.fromkeys(successors[node_id]):
            in_degree[target] -= 1
            if in_degree[target] == 0:
                ready.append(target)
    acyclic = len(topological) == len(order)
    if not acyclic:
        seen = set(topological)
        topological.extend(node_id for node_id in order if node_id not in seen)
    return _Graph(
        order=order,
        index=index,
        predecessors={node_id: tuple(edges) for node_id, edges in incoming.items()},
        entry=entry,
        topological=tuple(topological),
        acyclic=acyclic,
    )


# -- action schemas -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One action parameter. `kind`: string, string_map, string_list, integer, number, boolean,
    mapping, array, duration, status (an HTTP status or a list of them) or any."""

    kind: str = "string"
    required: bool = False
    choices: tuple[str, ...] | None = None
    description: str = ""


@dataclass(frozen=True)
class ActionSchema:
    """The parameters (`with:`) an action type accepts; checked when a definition is saved."""

    name: str
    params: Mapping[str, ParamSpec]
    description: str = ""
    exclusive: tuple[tuple[str, str], ...] = ()

    def validate(self, params: Mapping[str, Any], path: str) -> list[ValidationIssue]:
        """Issues for unknown, missing or mistyped parameters; template strings match any kind."""
        issues: list[ValidationIssue] = []
        for key in params:
            if key not in self.params:
                issues.append(
                    ValidationIssue(
                        f"{path}.{key}",
                        f"unknown parameter '{key}' for {self.name} action"
                        + (_suggest(key, self.params) or f" (allowed: {', '.join(self.params)})"),
                    )
                )
        for key, spec in self.params.items():
            if key not in params:
                if spec.required:
                    issues.append(ValidationIssue(f"{path}.{key}", "required"))
                continue
            issues.extend(_check_param(params[key], spec, f"{path}.{key}"))
        for first, second in self.exclusive:
            if first in params and second in params:
                issues.append(
                    ValidationIssue(path, f"set either '{first}' or '{second}', not both")
                )
        return issues


def _check_param(value: Any, spec: ParamSpec, path: str) -> list[ValidationIssue]:
    if is_template(value) or spec.kind == "any":
        return []
    kind = spec.kind
    if kind == "string_map":
        if not isinstance(value, Mapping):
            return [
                ValidationIssue(path, f"expected a mapping of strings, got {_type_name(value)}")
            ]
        return [
            ValidationIssue(f"{path}.{key}", f"expected a string, got {_type_name(item)}")
            for key, item in value.items()
            if not isinstance(item, str)
        ]
    if kind == "string_list":
        items = value if isinstance(value, list) else [value]
        if all(isinstance(item, str) for item in items):
            return []
        return [ValidationIssue(path, "expected a string or a list of strings")]
    if kind == "duration":
        try:
            parse_duration(value)
        except ValueError as exc:
            return [ValidationIssue(path, str(exc))]
        return []
    if kind == "status":
        codes = value if isinstance(value, list) else [value]
        if all(_is_int(code) and 100 <= code <= 599 for code in codes):
            return []
        return [ValidationIssue(path, "expected an HTTP status (100-599) or a list of them")]
    if not _matches_type(value, _PARAM_TYPES.get(kind, kind)):
        expected = _KIND_NAMES.get(kind, kind)
        return [ValidationIssue(path, f"expected {expected}, got {_type_name(value)}")]
    if spec.choices and str(value).lower() not in {choice.lower() for choice in spec.choices}:
        return [ValidationIssue(path, f"must be one of: {', '.join(spec.choices)}")]
    return []


_PARAM_TYPES = {"mapping": "object"}

_PARSE = ParamSpec("string", choices=("json",), description="parse the last stdout line as JSON")
_ENV = ParamSpec("string_map", description="extra environment variables")

ACTION_TYPES: dict[str, ActionSchema] = {}


def register_action(schema: ActionSchema) -> ActionSchema:
    """Make an action type known to validation (the agent side implements it)."""
    ACTION_TYPES[schema.name] = schema
    return schema


register_action(
    ActionSchema(
        "shell",
        {
            "command": ParamSpec("string", required=True),
            "env": _ENV,
            "cwd": ParamSpec("string"),
            "shell": ParamSpec("string", description="e.g. /bin/bash; default /bin/sh"),
            "parse": _PARSE,
        },
        "Run a command with a POSIX shell. Interpolate values with `shell_quote` or `env`.",
    )
)
register_action(
    ActionSchema(
        "script",
        {
            "body": ParamSpec("string", required=True),
            "interpreter": ParamSpec("string", description="bash (default), sh, python, or a path"),
            "args": ParamSpec("string_list"),
            "env": _ENV,
            "cwd": ParamSpec("string"),
            "parse": _PARSE,
        },
        "Run an inline script body with an interpreter.",
    )
)
register_action(
    ActionSchema(
        "http",
        {
            "url": ParamSpec("string", required=True),
            "method": ParamSpec(
                "string", choices=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            ),
            "headers": ParamSpec("string_map"),
            "query": ParamSpec("string_map"),
            "connection": ParamSpec(
                "string", description="secret holding a JSON object of these params"
            ),
            "json": ParamSpec("any"),
            "body": ParamSpec("string"),
            "expect_status": ParamSpec("status"),
            "timeout": ParamSpec("duration"),
            "follow_redirects": ParamSpec("boolean"),
            "env": _ENV,
            "parse": _PARSE,
        },
        "Make an HTTP request.",
        exclusive=(("json", "body"),),
    )
)
register_action(
    ActionSchema(
        "ssh",
        {
            "command": ParamSpec("string", required=True),
            "host": ParamSpec("string"),
            "user": ParamSpec("string"),
            "port": ParamSpec("integer"),
            "connection": ParamSpec(
                "string", description="secret holding a JSON object of these params"
            ),
            "password": ParamSpec("string"),
            "private_key": ParamSpec("string"),
            "passphrase": ParamSpec("string"),
            "known_hosts": ParamSpec("string"),
            "known_hosts_policy": ParamSpec("string", description="strict|accept-new|insecure"),
            "env": _ENV,
            "cwd": ParamSpec("string"),
            "parse": _PARSE,
        },
        "Run a command on another host through a connection.",
    )
)
register_action(
    ActionSchema(
        "notify",
        {
            "message": ParamSpec("string", required=True),
            "url": ParamSpec("string"),
            "kind": ParamSpec("string", description="e.g. webhook, slack, email"),
            "channel": ParamSpec("string"),
            "to": ParamSpec("string_list"),
            "subject": ParamSpec("string"),
            "headers": ParamSpec("string_map"),
            "query": ParamSpec("string_map"),
            "connection": ParamSpec(
                "string", description="secret holding a JSON object of these params"
            ),
            "json": ParamSpec("any"),
            "env": _ENV,
        },
        "Send a chat or e-mail notification.",
    )
)


# -- helpers --------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _matches_type(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        return _is_int(value)
    if type_name == "number":
        return _is_int(value) or (isinstance(value, float) and math.isfinite(value))
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, Mapping)
    if type_name == "array":
        return isinstance(value, list | tuple)
    return False


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


_KIND_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "mapping": "a mapping",
    "array": "a list",
}


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _cron_error(expression: str) -> str | None:
    """Why a 5-field cron expression (or an @macro) is invalid, or None."""
    text = expression.strip()
    if text in _CRON_MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return (
            "expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or one of {', '.join(sorted(_CRON_MACROS))}, got {len(fields)} field(s)"
        )
    for value, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in value.split(","):
            match = _CRON_PART.fullmatch(part)
            if not match:
                return f"invalid {name} field '{value}'"
            base, step = match.groups()
            if step is not None and int(step) == 0:
                return f"invalid {name} field '{value}': step must be positive"
            if base == "*":
                continue
            bounds = []
            for bound in base.split("-"):
                number = int(bound) if bound.isdigit() else names.get(bound.lower())
                if number is None or not low <= number <= high:
                    return f"invalid {name} field '{value}': '{bound}' is out of range {low}-{high}"
                bounds.append(number)
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                return f"invalid {name} field '{value}': range start is after its end"
    return None


def _cron_never_fires(expression: str) -> str | None:
    """A syntactically valid expression that matches no date (e.g. `0 0 31 2 *`), when croniter
    (a control-plane dependency) is installed to check it."""
    try:
        from croniter import CroniterBadDateError, croniter
    except ImportError:  # pragma: no cover - the engine itself does not need croniter
        return None
    try:
        croniter(expression.strip()).get_next()
    except CroniterBadDateError:
        return "never fires: no date matches this day-of-month and month"
    except Exception:  # croniter rejects something the syntax check accepted
        return "not a schedule croniter accepts"
    return None


_CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_PART = re.compile(r"(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(\d+))?")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)


@functools.cache
def _known_timezones() -> frozenset[str]:
    try:
        return frozenset(zoneinfo.available_timezones())
    except Exception:
        return frozenset()


# -- parsing --------------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_REPLACED_TAGS = (_BOOL_TAG, _INT_TAG, _TIMESTAMP_TAG)


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2-style scalars: `on`/`yes`/`no` stay strings (so `on:` edges work), no
    sexagesimal ints or timestamps (so the result stays JSON-serialisable), duplicate keys fail."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key '{key_node.value}'",
                        key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_YamlLoader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+)$"),
    list("-+0123456789"),
)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "syntax error"
        return f"invalid YAML: {problem} (line {mark.line + 1}, column {mark.column + 1})"
    return f"invalid YAML: {exc}"


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key '{key}'")
        result[key] = value
    return result


def _parse_source(source: str | bytes | Mapping) -> Any:
    def fail(message: str) -> DefinitionError:
        return DefinitionError([ValidationIssue("", message)])

    if isinstance(source, Mapping):
        return source
    if isinstance(source, bytes | bytearray):
        try:
            source = bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise fail(f"definition is not valid UTF-8: {exc}") from None
    if not isinstance(source, str):
        raise fail(f"expected YAML or JSON text or a mapping, got {_type_name(source)}")
    if not source.strip():
        raise fail("definition is empty")
    if source.lstrip().startswith(("{", "[")):
        try:
            return json.loads(source, object_pairs_hook=_reject_duplicate_json_keys)
        except ValueError:
            pass
    try:
        data = yaml.load(source, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        raise fail(_yaml_message(exc)) from None
    if data is None:
        raise fail("definition is empty")
    return data


def _plain(value: Any, path: str, issues: list[ValidationIssue]) -> Any:
    """A JSON-compatible deep copy (string keys; dicts and lists only)."""
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if isinstance(key, bool):
                key = "true" if key else "false"
            elif key is None:
                key = "null"
            elif not isinstance(key, str):
                if not isinstance(key, int | float):
                    issues.append(
                        ValidationIssue(path, f"unsupported key of type {_type_name(key)}")
                    )
                    continue
                key = str(key)
            result[key] = _plain(item, _join(path, key), issues)
        return result
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]", issues) for i, item in enumerate(value)]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            issues.append(ValidationIssue(path, "numbers must be finite"))
        return value
    issues.append(ValidationIssue(path, f"unsupported value of type {type(value).__name__}"))
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fix_node_keys(data: Mapping) -> Mapping:
    """Undo YAML 1.1's `on:` → True when a caller parsed the YAML with a stock loader."""
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        return data
    fixed = []
    for node in nodes:
        if isinstance(node, Mapping) and True in node and "on" not in node:
            node = {("on" if key is True else key): value for key, value in node.items()}
        fixed.append(node)
    return {**data, "nodes": fixed}


# -- validation -----------------------------------------------------------------------------


class _Validator:
    """Walks a plain definition, collecting issues and building the spec's parts."""

    def __init__(self, raw: dict) -> None:
        self.raw = raw
        self.issues: list[ValidationIssue] = []

    def add(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))

    def add_all(self, problems: Iterable[tuple[str, str]]) -> None:
        for path, message in problems:
            self.add(path, message)

    def unknown_keys(self, mapping: Mapping, allowed: tuple[str, ...], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.add(_join(path, key), f"unknown key '{key}'" + _suggest(key, allowed))

    def string(self, mapping: Mapping, key: str, path: str, default: str | None = None) -> Any:
        value = mapping.get(key, default)
        if value is not None and not isinstance(value, str):
            self.add(_join(path, key), f"expected a string, got {_type_name(value)}")
            return default
        return value

    def duration(self, value: Any, path: str) -> float | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None

    def mapping(self, key: str) -> dict:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping, got {_type_name(value)}")
            return {}
        return value

    # -- whole definition

    def build(self) -> WorkflowSpec:
        raw = self.raw
        self.unknown_keys(raw, _TOP_LEVEL_KEYS, "")
        slug = raw.get("slug")
        if slug is None:
            self.add("slug", "required")
        elif not isinstance(slug, str) or not _SLUG.fullmatch(slug):
            self.add(
                "slug",
                f"invalid slug {slug!r}: use 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit",
            )
        name = self.string(raw, "name", "") or (slug if isinstance(slug, str) else "")
        description = self.string(raw, "description", "", "") or ""
        timeout = None
        if raw.get("timeout") is not None:
            timeout = self.duration(raw["timeout"], "timeout") or None
        inputs = self.inputs(self.mapping("inputs"))
        variables = self.mapping("vars")
        self.add_all(check_syntax(variables, "vars"))
        nodes = self.nodes(raw.get("nodes"))
        outputs = self.mapping("outputs")
        self.add_all(check_syntax(outputs, "outputs"))
        triggers = self.triggers(raw.get("triggers"))
        keep = self.keep(raw.get("keep"))
        if self.issues:
            raise DefinitionError(self.issues)
        raw["name"] = name
        return WorkflowSpec(
            slug=slug,
            name=name,
            description=description,
            inputs=inputs,
            vars=variables,
            timeout=timeout,
            nodes=nodes,
            outputs=outputs,
            triggers=triggers,
            raw=raw,
            keep=keep,
        )

    # -- retention

    def keep(self, value: Any) -> dict[str, int] | None:
        """`keep: {days, count}`: whole non-negative numbers; a missing key is 0 (no limit of
        that kind), so `{days: 0, count: 0}` keeps this workflow's runs forever."""
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add("keep", f"expected a mapping with days and/or count, got {_type_name(value)}")
            return None
        self.unknown_keys(value, _KEEP_KEYS, "keep")
        if not any(key in value for key in _KEEP_KEYS):
            self.add("keep", "set days and/or count")
        keep = {}
        for key in _KEEP_KEYS:
            number = value.get(key, 0)
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                self.add(f"keep.{key}", f"expected a whole number >= 0, got {number!r}")
                continue
            keep[key] = number
        return keep

    # -- inputs

    def inputs(self, declared: dict) -> dict[str, InputSpec]:
        specs: dict[str, InputSpec] = {}
        for name, value in declared.items():
            path = f"inputs.{name}"
            if not _INPUT_NAME.fullmatch(name):
                self.add(path, f"invalid input name '{name}': use letters, digits and '_'")
                continue
            if value is None:
                value = {}
            elif isinstance(value, str):
                value = {"type": value}
            elif not isinstance(value, dict):
                self.add(path, f"expected a mapping, got {_type_name(value)}")
                continue
            spec = self.input_spec(name, value, path)
            if spec is not None:
                specs[name] = spec
        return specs

    def input_spec(self, name: str, value: dict, path: str) -> InputSpec | None:
        count = len(self.issues)
        self.unknown_keys(value, _INPUT_KEYS, path)
        type_name = value.get("type", "string")
        if type_name not in INPUT_TYPES:
            self.add(
                f"{path}.type",
                f"unknown input type {type_name!r} (known: {', '.join(INPUT_TYPES)})",
            )
            return None
        required = value.get("required", False)
        if not isinstance(required, bool):
            self.add(f"{path}.required", f"expected a boolean, got {_type_name(required)}")
        description = self.string(value, "description", path, "") or ""
        enum = value.get("enum")
        if enum is not None:
            if not isinstance(enum, list) or not enum:
                self.add(f"{path}.enum", "expected a non-empty list")
                enum = None
            else:
                for i, item in enumerate(enum):
                    if not _matches_type(item, type_name):
                        self.add(f"{path}.enum[{i}]", f"expected {type_name}, got {item!r}")
                enum = tuple(enum)
        default = value.get("default")
        if default is not None:
            if not _matches_type(default, type_name):
                self.add(f"{path}.default", f"expected {type_name}, got {default!r}")
            elif enum is not None and default not in enum:
                self.add(f"{path}.default", f"{default!r} is not one of the enum values")
        if len(self.issues) > count:
            return None
        return InputSpec(
            name=name,
            type=type_name,
            required=required,
            default=default,
            description=description,
            enum=enum,
        )

    # -- nodes

    def nodes(self, value: Any) -> dict[str, NodeSpec]:
        if value is None:
            self.add("nodes", "required")
            return {}
        if not isinstance(value, list) or not value:
            self.add("nodes", "expected a non-empty list of nodes")
            return {}
        first_index: dict[str, int] = {}
        specs: dict[str, NodeSpec] = {}
        skeleton: dict[str, dict[str, tuple[str, ...]]] = {}
        paths: dict[str, str] = {}
        targets: list[tuple[str, str, str]] = []
        for i, node in enumerate(value):
            path = f"nodes[{i}]"
            if not isinstance(node, dict):
                self.add(path, f"expected a mapping, got {_type_name(node)}")
                continue
            node_id = self.node_id(node, path, first_index)
            if node_id is not None:
                first_index[node_id] = i
            built = self.node(node, path, node_id)
            if built is None or node_id is None:
                continue
            spec, on, node_targets = built
            if spec is not None:
                specs[node_id] = spec
            skeleton[node_id] = on
            paths[node_id] = path
            targets.extend((node_id, target, target_path) for target, target_path in node_targets)
        for source, target, path in targets:
            if target == source:
                self.add(path, f"node '{source}' cannot have an edge to itself")
            elif target not in first_index:
                self.add(path, f"unknown node '{target}'" + _suggest(target, first_index))
        self.graph(
            {
                node_id: {
                    kind: tuple(t for t in ts if t in skeleton and t != node_id)
                    for kind, ts in on.items()
                }
                for node_id, on in skeleton.items()
            },
            paths,
        )
        return specs

    def node_id(self, node: dict, path: str, seen: Mapping[str, int]) -> str | None:
        node_id = node.get("id")
        if node_id is None:
            self.add(f"{path}.id", "required")
        elif not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
            self.add(
                f"{path}.id",
                f"invalid node id {node_id!r}: use letters, digits, '_' and '-', "
                "starting with a letter or '_'",
            )
        elif node_id in seen:
            self.add(
                f"{path}.id",
                f"duplicate node id '{node_id}' (already used by nodes[{seen[node_id]}])",
            )
        else:
            return node_id
        return None

    def node(
        self, node: dict, path: str, node_id: str | None
    ) -> tuple[NodeSpec | None, dict[str, tuple[str, ...]], list[tuple[str, str]]] | None:
        """The spec (None if invalid), its edges and their (target, path) pairs; None if the
        node's type is unknown."""
        count = len(self.issues)
        node_type = self.node_type(node, path)
        if node_type is None:
            return None
        allowed = (*_COMMON_NODE_KEYS, *_NODE_KEYS[node_type])
        for key in node:
            if key in allowed:
                continue
            if any(key in keys for keys in _NODE_KEYS.values()):
                self.add(f"{path}.{key}", f"'{key}' is not valid on {node_type} nodes")
            else:
                self.add(
                    f"{path}.{key}",
                    f"unknown key '{key}'" + _suggest(key, (*allowed, *_NODE_KEYS["action"])),
                )
        self.string(node, "name", path)
        self.string(node, "description", path)
        wait_for = node.get("wait_for", "all")
        if wait_for not in ("all", "any"):
            self.add(f"{path}.wait_for", f"must be 'all' or 'any', got {wait_for!r}")
        run_if = self.expression(node, "run_if", path)
        on, targets = self.edges(node.get("on"), node_type, f"{path}.on")
        timeout = None
        if node.get("timeout") is not None:
            timeout = self.duration(node["timeout"], f"{path}.timeout") or None
        retries = None
        if node.get("retries") is not None:
            retries = self.retries(node["retries"], f"{path}.retries")
        action = params = pool = agent = condition = duration = None
        labels: dict[str, str] = {}
        assertions: tuple[str, ...] = ()
        extract: dict[str, str] = {}
        if node_type == "action":
            action, params = self.action(node, path)
            pool = self.string(node, "pool", path)
            agent = self.string(node, "agent", path)
            labels = self.string_mapping(node, "labels", path)
            assertions = self.assertions(node, path)
            extract = self.string_mapping(node, "outputs", path)
            for name, expression in extract.items():
                if not expression.startswith(_JSONPATH_START):
                    self.add(
                        f"{path}.outputs.{name}",
                        f"expected a JSONPath like '$.data.token', got {expression!r}",
                    )
        elif node_type == "condition":
            condition = self.expression(node, "if", path)
            if node.get("if") is None:
                self.add(f"{path}.if", "required")
        elif node_type == "wait":
            if node.get("duration") is None:
                self.add(f"{path}.duration", "required")
            else:
                duration = self.duration(node["duration"], f"{path}.duration")
        elif node_type == "approval":
            self.approval(node, path)
        elif node_type == "workflow":
            params = self.child_workflow(node, path)
        self.add_all(
            check_syntax({k: v for k, v in node.items() if k not in _EXPRESSION_KEYS}, path)
        )
        if len(self.issues) > count or node_id is None:
            return None, on, targets
        spec = NodeSpec(
            id=node_id,
            type=node_type,
            action=action,
            params=params or {},
            pool=pool,
            agent=agent,
            timeout=timeout,
            retries=retries,
            on=on,
            wait_for=wait_for,
            run_if=run_if,
            condition=condition,
            raw=node,
            duration=duration,
            labels=labels,
            assertions=assertions,
            extract=extract,
        )
        return spec, on, targets

    def string_mapping(self, mapping: dict, key: str, path: str) -> dict[str, str]:
        value = mapping.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(f"{path}.{key}", f"expected a mapping, got {_type_name(value)}")
            return {}
        result = {}
        for item_key, item in value.items():
            if not isinstance(item, str | int | float) or isinstance(item, bool):
                self.add(f"{path}.{key}.{item_key}", f"expected a string, got {_type_name(item)}")
            else:
                result[str(item_key)] = str(item)
        return result

    def assertions(self, node: dict, path: str) -> tuple[str, ...]:
        value = node.get("assert")
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.add(f"{path}.assert", "expected a non-empty list of expressions")
            return ()
        result = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.add(
                    f"{path}.assert[{index}]", f"expected an expression, got {_type_name(item)}"
                )
                continue
            self.add_all(check_expression(item, f"{path}.assert[{index}]"))
            result.append(item)
        return tuple(result)

    def node_type(self, node: dict, path: str) -> str | None:
        node_type = node.get("type")
        if "action" in node:
            if node_type is None or node_type == "action":
                return "action"
            self.add(f"{path}.action", f"'action' is only valid on action nodes, not {node_type!r}")
            return None
        if node_type is None:
            self.add(
                f"{path}.type",
                f"required: set 'action:' or 'type:' (one of: {', '.join(NODE_TYPES)})",
            )
            return None
        if node_type not in NODE_TYPES:
            self.add(
                f"{path}.type",
                f"unknown node type {node_type!r} (known: {', '.join(NODE_TYPES)})"
                + _suggest(str(node_type), NODE_TYPES),
            )
            return None
        if node_type == "action":
            self.add(f"{path}.action", "required for action nodes")
            return None
        return node_type

    def expression(self, mapping: dict, key: str, path: str) -> str | None:
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str):
            self.add(f"{path}.{key}", f"expected an expression string, got {_type_name(value)}")
            return None
        self.add_all(check_expression(value, f"{path}.{key}"))
        return value

    def edges(
        self, value: Any, node_type: str, path: str
    ) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
        """The `on:` mapping normalised to tuples, plus (target, path) pairs to check later."""
        if value is None:
            return {}, []
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping of edge kinds to node ids, got {_type_name(value)}")
            return {}, []
        allowed = EDGES_BY_TYPE[node_type]
        on: dict[str, tuple[str, ...]] = {}
        targets: list[tuple[str, str]] = []
        for kind, target in value.items():
            kind_path = f"{path}.{kind}"
            if kind not in EDGE_KINDS:
                self.add(
                    kind_path,
                    f"unknown edge kind '{kind}' (allowed: {', '.join(allowed)})"
                    + _suggest(kind, allowed),
                )
                continue
            if kind not in allowed:
                self.add(
                    kind_path,
                    f"edge kind '{kind}' is not valid for {node_type} nodes "
                    f"(allowed: {', '.join(allowed)})",
                )
                continue
            if isinstance(target, str):
                items = [(target, kind_path)]
            elif isinstance(target, list):
                items = [(item, f"{kind_path}[{i}]") for i, item in enumerate(target)]
            else:
                self.add(
                    kind_path, f"expected a node id or a list of them, got {_type_name(target)}"
                )
                continue
            ids: list[str] = []
            for item, item_path in items:
                if not isinstance(item, str):
                    self.add(item_path, f"expected a node id, got {_type_name(item)}")
                elif item in ids:
                    self.add(item_path, f"duplicate target '{item}'")
                else:
                    ids.append(item)
                    targets.append((item, item_path))
            on[kind] = tuple(ids)
        return on, targets

    def graph(self, edges: dict[str, dict[str, tuple[str, ...]]], paths: dict[str, str]) -> None:
        """Cycles and unreachable nodes, over the edges between nodes with a valid id and type."""
        graph = _build_graph(edges)
        if not graph.entry:
            self.add("nodes", "no entry node: every node has an incoming edge")
        if not graph.acyclic:
            for cycle in _cycles(edges):
                self.add(paths[cycle[0]], "cycle: " + " -> ".join((*cycle, cycle[0])))
        if graph.entry:
            reached = set(graph.entry)
            queue = deque(graph.entry)
            while queue:
                for targets in edges[queue.popleft()].values():
                    for target in targets:
                        if target not in reached:
                            reached.add(target)
                            queue.append(target)
            for node_id in graph.order:
                if node_id not in reached:
                    self.add(
                        paths[node_id], f"node '{node_id}' is unreachable from every entry node"
                    )

    def retries(self, value: Any, path: str) -> RetryPolicy | None:
        if _is_int(value):
            value = {"max": value}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping or a number of retries, got {_type_name(value)}")
            return None
        count = len(self.issues)
        self.unknown_keys(value, _RETRY_KEYS, path)
        maximum = value.get("max", 0)
        if not _is_int(maximum) or maximum < 0:
            self.add(f"{path}.max", f"expected an integer >= 0, got {maximum!r}")
        delay = self.duration(value.get("delay", 0), f"{path}.delay")
        backoff = value.get("backoff", 1.0)
        if not _matches_type(backoff, "number") or backoff < 1:
            self.add(f"{path}.backoff", f"expected a number >= 1, got {backoff!r}")
        max_delay = None
        if value.get("max_delay") is not None:
            max_delay = self.duration(value["max_delay"], f"{path}.max_delay")
        if len(self.issues) > count:
            return None
        return RetryPolicy(
            max=maximum, delay=delay or 0.0, backoff=float(backoff), max_delay=max_delay
        )

    def action(self, node: dict, path: str) -> tuple[str | None, dict | None]:
        action = node.get("action")
        params = node.get("with")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            self.add(f"{path}.with", f"expected a mapping of parameters, got {_type_name(params)}")
            params = None
        if not isinstance(action, str):
            self.add(f"{path}.action", f"expected an action type name, got {_type_name(action)}")
            return None, params
        schema = ACTION_TYPES.get(action)
        if schema is None:
            self.add(
                f"{path}.action",
                f"unknown action type '{action}' (known: {', '.join(sorted(ACTION_TYPES))})"
                + _suggest(action, ACTION_TYPES),
            )
        elif params is not None:
            self.issues.extend(schema.validate(params, f"{path}.with"))
        return action, params

    def approval(self, node: dict, path: str) -> None:
        self.string(node, "message", path)
        approvers = node.get("approvers")
        if approvers is not None:
            if not isinstance(approvers, dict):
                self.add(f"{path}.approvers", "expected a mapping with 'users' and/or 'groups'")
            else:
                self.unknown_keys(approvers, ("users", "groups"), f"{path}.approvers")
                for key in ("users", "groups"):
                    names = approvers.get(key, [])
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        self.add(f"{path}.approvers.{key}", "expected a list of names")
        quorum = node.get("quorum")
        if quorum is not None and (not _is_int(quorum) or quorum < 1):
            self.add(f"{path}.quorum", f"expected an integer >= 1, got {quorum!r}")
        allow_self = node.get("allow_self_approval")
        if allow_self is not None and not isinstance(allow_self, bool):
            self.add(f"{path}.allow_self_approval", "expected a boolean")
        escalate = node.get("escalate")
        if escalate is not None:
            if not isinstance(escalate, dict):
                self.add(f"{path}.escalate", "expected a mapping with 'after' and 'to'")
            else:
                self.unknown_keys(escalate, ("after", "to"), f"{path}.escalate")
                if escalate.get("after") is None:
                    self.add(f"{path}.escalate.after", "required")
                else:
                    self.duration(escalate["after"], f"{path}.escalate.after")
                target = escalate.get("to")
                if not isinstance(target, dict) or not (
                    target.get("users") or target.get("groups")
                ):
                    self.add(
                        f"{path}.escalate.to", "expected {users: [...]} and/or {groups: [...]}"
                    )
                else:
                    self.unknown_keys(target, ("users", "groups"), f"{path}.escalate.to")
        context = node.get("context")
        if context is not None and not isinstance(context, dict):
            self.add(f"{path}.context", "expected a mapping of name: template")
        notify = node.get("notify")
        if notify is not None:
            if not isinstance(notify, dict):
                self.add(f"{path}.notify", "expected a mapping with 'email' and/or 'chat_webhook'")
            else:
                self.unknown_keys(notify, ("email", "chat_webhook"), f"{path}.notify")
                if "email" in notify and not isinstance(notify["email"], bool):
                    self.add(f"{path}.notify.email", "expected a boolean")

    def child_workflow(self, node: dict, path: str) -> dict | None:
        slug = node.get("workflow")
        if slug is None:
            self.add(f"{path}.workflow", "required: the slug of the workflow to run")
        elif not isinstance(slug, str) or not (_SLUG.fullmatch(slug) or is_template(slug)):
            self.add(f"{path}.workflow", f"invalid workflow slug {slug!r}")
        params = node.get("with", {})
        if not isinstance(params, dict):
            self.add(f"{path}.with", f"expected a mapping of inputs, got {_type_name(params)}")
            return None
        return params

    # -- triggers

    def triggers(self, value: Any) -> tuple[dict, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.add("triggers", f"expected a list, got {_type_name(value)}")
            return ()
        for i, trigger in enumerate(value):
            path = f"triggers[{i}]"
            if not isinstance(trigger, dict):
                self.add(path, f"expected a mapping, got {_type_name(trigger)}")
                continue
            kind = trigger.get("type")
            if kind not in TRIGGER_TYPES:
                message = "required" if kind is None else f"unknown trigger type {kind!r}"
                self.add(f"{path}.type", f"{message} (one of: {', '.join(TRIGGER_TYPES)})")
            else:
                self.unknown_keys(trigger, _TRIGGER_KEYS[kind], path)
            if kind == "cron":
                self.cron_trigger(trigger, path)
            elif kind == "event":
                event = trigger.get("event")
                if not isinstance(event, str) or not event.strip():
                    self.add(
                        f"{path}.event",
                        "required: the event type to match, e.g. 'incident.created' "
                        "(glob patterns such as 'incident.*' allowed)",
                    )
                self.string(trigger, "source", path)
            elif kind == "webhook":
                for key in ("secret", "secret_previous"):
                    secret = trigger.get(key)
                    if secret is not None and trigger_secret_name(secret) is None:
                        self.add(
                            f"{path}.{key}",
                            "must reference a stored secret, e.g. '{{ secrets.hook_secret }}'; "
                            "never put a secret value in a definition",
                        )
                if trigger.get("secret_previous") is not None and trigger.get("secret") is None:
                    self.add(f"{path}.secret_previous", "only allowed together with 'secret'")
            inputs = trigger.get("inputs")
            if inputs is not None and not isinstance(inputs, dict):
                self.add(
                    f"{path}.inputs",
                    f"expected a mapping of input names to values, got {_type_name(inputs)}",
                )
            for key in ("name", "description"):
                self.string(trigger, key, path)
            self.expression(trigger, "if", path)
            self.add_all(
                check_syntax({k: v for k, v in trigger.items() if k not in _EXPRESSION_KEYS}, path)
            )
        return tuple(value)

    def cron_trigger(self, trigger: dict, path: str) -> None:
        cron = trigger.get("cron")
        if not isinstance(cron, str):
            self.add(f"{path}.cron", "required: a cron expression such as '0 3 * * *'")
        elif (error := _cron_error(cron) or _cron_never_fires(cron)) is not None:
            self.add(f"{path}.cron", error)
        timezone = trigger.get("timezone")
        if timezone is not None:
            known = _known_timezones()
            if not isinstance(timezone, str):
                self.add(f"{path}.timezone", "expected a timezone name such as 'UTC'")
            elif known and timezone not in known and timezone != "UTC":
                self.add(f"{path}.timezone", f"unknown timezone '{timezone}'")
        misfire = trigger.get("misfire")
        if misfire is not None and misfire not in MISFIRE_POLICIES:
            self.add(
                f"{path}.misfire",
                f"must be one of: {', '.join(MISFIRE_POLICIES)} (got {misfire!r})",
            )


def _cycles(edges: Mapping[str, Mapping[str, tuple[str, ...]]]) -> list[tuple[str, ...]]:
    """One cycle per strongly connected component with more than one node (Tarjan, iterative)."""
    order = tuple(edges)
    successors = {
        node_id: list(dict.fromkeys(t for ts in on.values() for t in ts))
        for node_id, on in edges.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in order:
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node_id, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                elif child in on_stack:
                    low[node_id] = min(low[node_id], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
            if low[node_id] == index[node_id]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node_id:
                        break
                if len(component) > 1:
                    components.append(component)
    position = {node_id: i for i, node_id in enumerate(order)}
    cycles = []
    for component in sorted(components, key=lambda c: min(position[n] for n in c)):
        members = set(component)
        start = min(component, key=position.__getitem__)
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node_id = queue.popleft()
            if start in successors[node_id]:
                path = [node_id]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                cycles.append(tuple(reversed(path)))
                break
            for child in successors[node_id]:
                if child in members and child not in previous and child != start:
                    previous[child] = node_id
                    queue.append(child)
    return cycles


def load_definition(source: str | bytes | Mapping) -> WorkflowSpec:
    """Parse (YAML or JSON text, or an already parsed mapping) and validate a definition.

    Raises `DefinitionError` listing every issue found.
    """
    data = _parse_source(source)
    if not isinstance(data, Mapping):
        raise DefinitionError(
            [ValidationIssue("", f"definition must be a mapping, got {_type_name(data)}")]
        )
    issues: list[ValidationIssue] = []
    raw = _plain(_fix_node_keys(data), "", issues)
    if issues:
        raise DefinitionError(issues)
    return _Validator(raw).build()


# -- inputs at run time ---------------------------------------------------------------------

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_INTEGER_TEXT = re.compile(r"[-+]?\d+")


def _coerce(value: Any, type_name: str) -> Any:
    """`value` as `type_name`, converting unambiguous strings; raise ValueError otherwise."""
    text = value.strip() if isinstance(value, str) else None
    if type_name == "string":
        if isinstance(value, str):
            return value
        if _is_int(value):
            return str(value)
    elif type_name == "integer":
        if _is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and _INTEGER_TEXT.fullmatch(text):
            return int(text)
    elif type_name == "number":
        if _matches_type(value, "number"):
            return value
        if text is not None:
            if _INTEGER_TEXT.fullmatch(text):
                return int(text)
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif type_name == "boolean":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
    elif type_name in ("object", "array"):
        if text is not None:
            with contextlib.suppress(ValueError):
                value = json.loads(text)
        if type_name == "object" and isinstance(value, Mapping):
            return copy.deepcopy(dict(value))
        if type_name == "array" and isinstance(value, list | tuple):
            return copy.deepcopy(list(value))
    raise ValueError(f"expected {type_name}, got {value!r}")


def coerce_inputs(spec: WorkflowSpec, provided: Mapping | None) -> dict:
    """Validate run-time inputs against the spec: apply defaults, coerce, check enums.

    Optional inputs without a default and without a value are left out (templates can use
    `default(...)`). Raises `DefinitionError` with paths `inputs.<name>`.
    """
    if provided is None:
        provided = {}
    if not isinstance(provided, Mapping):
        raise DefinitionError(
            [ValidationIssue("inputs", f"expected a mapping, got {_type_name(provided)}")]
        )
    issues: list[ValidationIssue] = []
    result: dict[str, Any] = {}
    for name in provided:
        if name not in spec.inputs:
            known = ", ".join(spec.inputs) or "none"
            issues.append(
                ValidationIssue(
                    f"inputs.{name}",
                    f"unknown input (declared: {known})" + _suggest(str(name), spec.inputs),
                )
            )
    for name, declared in spec.inputs.items():
        path = f"inputs.{name}"
        if name not in provided or provided[name] is None:
            if declared.default is not None:
                result[name] = copy.deepcopy(declared.default)
            elif declared.required:
                issues.append(ValidationIssue(path, "required"))
            continue
        try:
            value = _coerce(provided[name], declared.type)
        except ValueError as exc:
            issues.append(ValidationIssue(path, str(exc)))
            continue
        if declared.enum is not None and value not in declared.enum:
            choices = ", ".join(repr(choice) for choice in declared.enum)
            issues.append(ValidationIssue(path, f"must be one of: {choices}; got {value!r}"))
            continue
        result[name] = value
    if issues:
        raise DefinitionError(issues)
    return result
