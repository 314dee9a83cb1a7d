"""Sandboxed Jinja2 templates for workflow definitions.

Templates see `inputs`, `trigger`, `event`, `vars`, `nodes.<id>.output.*`, `nodes.<id>.status`,
`secrets.<name>` and `execution` (whatever mapping the caller passes). Undefined variables are
errors naming the full missing path, never empty strings. A string that is exactly one `{{ expr }}`
renders to the expression's native value so structured parameters keep their types.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2 import exceptions as jinja_exceptions
from jinja2.environment import TemplateExpression
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

__all__ = [
    "TemplateError",
    "check_expression",
    "check_syntax",
    "contains_template",
    "evaluate_expression",
    "is_template",
    "render_value",
    "shell_quote",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_REPEAT_LENGTH = 1_000_000
_MAX_POWER_BITS = 100_000


class TemplateError(Exception):
    """A template failed to parse or render; `path` says where in the rendered value."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def is_template(value: object) -> bool:
    """True for strings that contain Jinja markup (`{{` or `{%`)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def contains_template(value: object) -> bool:
    """True if any string inside `value` (through dicts, lists and tuples) is a template: if
    not, `render_value` needs no context (it only copies the containers)."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(contains_template(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(contains_template(item) for item in value)
    return False


def _value_path(parent: str, key: object) -> str:
    """Where a value sits inside a rendered structure: `with.headers.X-Token`, `with.args[0]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _variable_path(parent: str, key: object) -> str:
    """How a template would spell the access: `nodes.build.output`, `headers['X-Token']`, `a[0]`."""
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{key!r}]"


def _wrap(value: Any, path: str) -> Any:
    if isinstance(value, _PathDict | _PathList):
        return value
    if isinstance(value, Mapping):
        return _PathDict(value, path)
    if isinstance(value, list | tuple):
        return _PathList(value, path)
    return value


class _PathDict(dict):
    """A context mapping that knows its dotted path so undefined lookups can name it."""

    __slots__ = ("_path",)

    def __init__(self, data: Mapping, path: str) -> None:
        super().__init__(data)
        self._path = path

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        wrapped = _wrap(value, _variable_path(self._path, key))
        if wrapped is not value:
            super().__setitem__(key, wrapped)
        return wrapped


class _PathList(list):
    """A context sequence that knows its path (see `_PathDict`)."""

    __slots__ = ("_path",)

    def __init__(self, data: list | tuple, path: str) -> None:
        super().__init__(data)
        self._path = path

    def __getitem__(self, index: Any) -> Any:
        value = super().__getitem__(index)
        if isinstance(index, slice):
            return value
        wrapped = _wrap(value, _variable_path(self._path, index))
        if wrapped is not value:
            super().__setitem__(index, wrapped)
        return wrapped

    def __iter__(self) -> Any:
        for index in range(len(self)):
            yield self[index]


class _PathUndefined(StrictUndefined):
    """Strict undefined whose error names the full missing path (`nodes.build.output.version`)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        obj, name = self._undefined_obj, self._undefined_name
        if obj is missing and name is not None:
            return f"{name!r} is undefined"
        if isinstance(obj, _PathDict | _PathList) and name is not None:
            return f"{_variable_path(obj._path, name)!r} is undefined"
        return super()._undefined_message


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def shell_quote(value: Any) -> str:
    """Quote a value as one POSIX shell word.

    Interpolating template values into a shell command without this filter is a command-injection
    risk: `rm {{ inputs.path }}` with a path of `x; rm -rf ~` runs both commands. Write
    `rm {{ inputs.path | shell_quote }}`, or pass the value through the action's `env:` instead.
    """
    return shlex.quote(str(_defined(value)))


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(_defined(value), indent=indent)


def _fromjson(value: Any) -> Any:
    return json.loads(_defined(value))


def _b64encode(value: Any) -> str:
    value = _defined(value)
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: Any) -> str:
    value = _defined(value)
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"b64decode: {exc}") from exc


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus: mapping keys win over dict methods, and huge `*`/`**` results fail."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        kind = "dict" if isinstance(obj, dict) else "list" if isinstance(obj, list) else None
        return self.undefined(
            f"access to attribute {attribute!r} of {kind or type(obj).__name__!r} object is unsafe",
            name=attribute,
            obj=obj,
            exc=jinja_exceptions.SecurityError,
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, _PathDict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > _MAX_POWER_BITS:
                raise jinja_exceptions.SecurityError("result of '**' would be too large")
        elif operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | bytes | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > _MAX_REPEAT_LENGTH
                ):
                    raise jinja_exceptions.SecurityError("result of '*' would be too large")
        return super().call_binop(context, operator, left, right)


_env = _Environment(
    undefined=_PathUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
_env.filters.update(
    shell_quote=shell_quote,
    tojson=_tojson,
    fromjson=_fromjson,
    b64encode=_b64encode,
    b64decode=_b64decode,
)

_Compiled = Template | TemplateExpression


def _expression_template(expr: nodes.Expr) -> TemplateExpression:
    """Compile one parsed expression so calling it returns its native value."""
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
    body.set_environment(_env)
    return TemplateExpression(_env.from_string(body), undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _compile_template(source: str) -> _Compiled:
    """A single `{{ expr }}` compiles to a native-value expression; anything else to a Template."""
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}"):
        body = _env.parse(source).body
        if len(body) == 1 and isinstance(body[0], nodes.Output):
            parts = [
                node
                for node in body[0].nodes
                if not (isinstance(node, nodes.TemplateData) and not node.data.strip())
            ]
            if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
                return _expression_template(parts[0])
    return _env.from_string(source)


@functools.lru_cache(maxsize=4096)
def _compile_expression(source: str) -> _Compiled:
    """Accept `{{ expr }}` or a bare `expr`; reject any other template."""
    if "{{" in source or "{%" in source:
        compiled = _compile_template(source)
        if not isinstance(compiled, TemplateExpression):
            raise jinja_exceptions.TemplateSyntaxError(
                "expected a single expression such as '{{ x == 1 }}'", 1
            )
        return compiled
    return _env.compile_expression(source, undefined_to_none=False)


def _syntax_message(exc: jinja_exceptions.TemplateSyntaxError, source: str) -> str:
    message = exc.message or "invalid template"
    if "\n" in source.strip() and exc.lineno:
        message = f"{message} (line {exc.lineno})"
    return f"template syntax error: {message}"


def _compile(compiler: Callable[[str], _Compiled], source: str, path: str) -> _Compiled:
    try:
        return compiler(source)
    except jinja_exceptions.TemplateSyntaxError as exc:
        raise TemplateError(_syntax_message(exc, source), path) from exc


def _native(value: Any) -> Any:
    """Fail on undefined values anywhere in a result and drop the path-aware wrappers."""
    if isinstance(value, Undefined):
        _defined(value)
    if isinstance(value, dict):
        return {key: _native(item) for key, item in dict.items(value)}
    if isinstance(value, list):
        return [_native(item) for item in list.__iter__(value)]
    if isinstance(value, tuple):
        return tuple(_native(item) for item in value)
    return value


def _run(compiled: _Compiled, context: dict[str, Any], path: str) -> Any:
    try:
        if isinstance(compiled, TemplateExpression):
            return _native(compiled(context))
        return compiled.render(context)
    except jinja_exceptions.SecurityError as exc:
        raise TemplateError(f"unsafe template: {exc.message or exc}", path) from exc
    except jinja_exceptions.TemplateError as exc:
        raise TemplateError(exc.message or str(exc), path) from exc
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}", path) from exc


def _context(context: Mapping) -> dict[str, Any]:
    return {name: _wrap(value, str(name)) for name, value in context.items()}


def _render(value: Any, context: dict[str, Any], path: str) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        return _run(_compile(_compile_template, value, path), context, path)
    if isinstance(value, Mapping):
        return {key: _render(item, context, _value_path(path, key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        rendered = [_render(item, context, _value_path(path, i)) for i, item in enumerate(value)]
        return rendered if isinstance(value, list) else tuple(rendered)
    return value


def render_value(value: Any, context: Mapping, path: str = "") -> Any:
    """Render every template string inside `value` (recursively through dicts and lists).

    Strings without markup and non-strings pass through; a string that is one `{{ expr }}` yields
    the expression's native value; other template strings render to strings.
    Raises `TemplateError` with `path` pointing into `value`.
    """
    return _render(value, _context(context), path)


def evaluate_expression(expression: str, context: Mapping) -> Any:
    """Evaluate `"{{ x == 1 }}"` or bare `x == 1` to its native value (non-strings pass through)."""
    if not isinstance(expression, str):
        return expression
    source = expression.strip()
    if not source:
        raise TemplateError("empty expression")
    return _run(_compile(_compile_expression, source, ""), _context(context), "")


def check_expression(expression: Any, path: str = "") -> list[tuple[str, str]]:
    """`(path, message)` if `expression` is not a valid expression, else an empty list."""
    if not isinstance(expression, str):
        return []
    source = expression.strip()
    if not source:
        return [(path, "empty expression")]
    try:
        _compile_expression(source)
    except jinja_exceptions.TemplateSyntaxError as exc:
        return [(path, _syntax_message(exc, source))]
    return []


def check_syntax(value: Any, path: str = "") -> list[tuple[str, str]]:
    """`(path, message)` for every template string inside `value` that fails to compile."""
    problems: list[tuple[str, str]] = []
    if isinstance(value, str):
        if is_template(value):
            try:
                _compile_template(value)
            except jinja_exceptions.TemplateSyntaxError as exc:
                problems.append((path, _syntax_message(exc, value)))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            problems.extend(check_syntax(item, _value_path(path, key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problems.extend(check_syntax(item, _value_path(path, index)))
    return problems
