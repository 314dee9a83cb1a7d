"""The ``script`` action: write an inline ``body`` to the job's temp dir and run it.

Params: ``body`` (required), ``interpreter`` (default ``bash``), ``args`` (passed to the
script), ``cwd``; ``env`` and ``parse`` are applied by the runner as for every action.

``interpreter`` is ``bash``, ``sh``, ``python`` or any command: a bare name is looked up on the
job's ``PATH`` (so ``python`` means the ``python3`` found there, not the interpreter running
the agent, whose virtualenv is no business of the job's), a path is used as is, and extra words
are interpreter options (``bash -eu``, ``python3 -u``).
"""

from __future__ import annotations

import os
import shlex
import shutil

from agents.agent.actions import ActionResult, JobContext, register_action
from agents.agent.actions.shell import run_process
from agents.agent.params import ParamError, optional_str, required_str, string_list

DEFAULT_INTERPRETER = "bash"
_ALIASES = {"python": "python3"}


def resolve_interpreter(spec: str, path: str | None) -> list[str]:
    """The interpreter's argv prefix; raises ``ParamError`` if it cannot be found."""
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ParamError(f"params.interpreter: {exc}") from None
    if not words:
        raise ParamError("params.interpreter must not be empty")
    name = _ALIASES.get(words[0], words[0])
    if os.sep in name:
        if not os.access(name, os.X_OK):
            raise ParamError(f"interpreter {name} does not exist or is not executable")
        return [name, *words[1:]]
    found = shutil.which(name, path=path)
    if found is None:
        raise ParamError(f"interpreter '{name}' not found on PATH")
    return [found, *words[1:]]


@register_action("script")
def script(ctx: JobContext) -> ActionResult:
    try:
        body = required_str(ctx.params, "body")
        interpreter = optional_str(ctx.params, "interpreter", DEFAULT_INTERPRETER)
        argv = resolve_interpreter(interpreter or DEFAULT_INTERPRETER, ctx.env.get("PATH"))
        args = string_list(ctx.params, "args")
        cwd = optional_str(ctx.params, "cwd")
    except ParamError as exc:
        return ActionResult.failure(str(exc))
    path = ctx.workdir / "script"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)
    return run_process(ctx, [*argv, str(path), *args], cwd=cwd)
