"""The ``ssh`` action: run ``command`` on another host over SSH (asyncssh).

Params: ``host`` (required), ``port`` (22), ``user``, ``command`` (required), ``env``, ``cwd``,
``parse``; credentials as rendered by the server from the stored ``connection``: ``password``
and/or ``private_key`` (OpenSSH/PEM text, ``passphrase`` if encrypted), ``known_hosts`` (text
in OpenSSH format) and ``known_hosts_policy``:

- ``strict`` (default): the host key must be listed in ``known_hosts``;
- ``accept-new``: a host listed in ``known_hosts`` must match, an unlisted one is accepted
  (the agent keeps no state between jobs, so nothing is remembered);
- ``insecure``: no host key check at all.

Only the credentials in params are used: never the agent host's ``~/.ssh`` keys, config or
ssh-agent, so what a job can reach does not depend on which agent ran it. ``env`` and ``cwd``
are applied by prefixing the command (``cd … && export …``), because most SSH servers refuse
environment requests. The remote side cannot write ``$SWITCHYARD_OUTPUT``.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from agents.agent.actions import ActionResult, JobContext, OutputSink, register_action
from agents.agent.actions.shell import TailBuffer, format_seconds
from agents.agent.asyncrun import run_cancellable
from agents.agent.params import ParamError, optional_int, optional_str, required_str, string_map

POLICIES = ("strict", "accept-new", "insecure")
CONNECT_TIMEOUT_S = 30.0
_READ_SIZE = 64 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_VARIABLES = (
    "SWITCHYARD_EXECUTION_ID",
    "SWITCHYARD_JOB_ID",
    "SWITCHYARD_NODE_ID",
    "SWITCHYARD_ATTEMPT",
    "SWITCHYARD_WORKFLOW",
)


@dataclass
class SshTarget:
    host: str
    port: int
    options: dict[str, Any] = field(repr=False)  # holds credentials: never in a log line
    command: str = ""


def remote_command(command: str, env: dict[str, str], cwd: str | None) -> str:
    """``command`` preceded by POSIX-shell lines that set ``env`` and enter ``cwd``."""
    lines = [f"cd {shlex.quote(cwd)} || exit 1"] if cwd else []
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise ParamError(f"params.env: invalid variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join([*lines, command])


def _known_hosts(params: dict[str, Any], host: str, port: int) -> Any:
    """The ``known_hosts`` argument for asyncssh according to the policy."""
    policy = (optional_str(params, "known_hosts_policy") or "strict").lower()
    if policy not in POLICIES:
        raise ParamError(f"params.known_hosts_policy must be one of {', '.join(POLICIES)}")
    text = optional_str(params, "known_hosts")
    if policy == "insecure":
        return None
    known = None
    if text:
        try:
            known = asyncssh.import_known_hosts(text)
        except (ValueError, asyncssh.Error) as exc:
            raise ParamError(f"params.known_hosts: cannot parse ({exc})") from None
    if policy == "strict":
        if known is None:
            raise ParamError("strict host key checking needs params.known_hosts")
        return known
    listed = known is not None and any(known.match(host, "", port)[:2])
    return known if listed else None


def build_target(ctx: JobContext) -> SshTarget:
    params = ctx.params
    host = optional_str(params, "host")
    if not host:
        connection = optional_str(params, "connection")
        suffix = f" (connection '{connection}' provided none)" if connection else ""
        raise ParamError(f"params.host is required{suffix}")
    command = required_str(params, "command")
    port = optional_int(params, "port", 22)
    private_key = optional_str(params, "private_key")
    keys: list[asyncssh.SSHKey] = []
    if private_key:
        try:
            keys.append(
                asyncssh.import_private_key(private_key, optional_str(params, "passphrase"))
            )
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ParamError(f"params.private_key: cannot import the key ({exc})") from None
    env = {name: ctx.env[name] for name in _JOB_VARIABLES if name in ctx.env}
    env.update(string_map(params, "env"))
    options: dict[str, Any] = {
        "password": optional_str(params, "password"),
        "client_keys": keys or None,
        "known_hosts": _known_hosts(params, host, port),
        "agent_path": None,
        "config": [],
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    user = optional_str(params, "user")
    if user:
        options["username"] = user  # else asyncssh uses the agent's local user name, like ssh
    return SshTarget(host, port, options, remote_command(command, env, optional_str(params, "cwd")))


async def _pump(
    reader: asyncssh.SSHReader[bytes], buffer: TailBuffer, sink: OutputSink, name: str
) -> None:
    while chunk := await reader.read(_READ_SIZE):
        buffer.feed(chunk)
        sink.write(name, chunk)


def _connection_error(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"authentication failed ({exc.reason})"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key verification failed ({exc.reason})"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"ssh: {exc.reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"DNS: {exc.strerror}"
    return f"connection failed: {exc}"


async def run_ssh(ctx: JobContext, target: SshTarget) -> ActionResult:
    stdout, stderr = TailBuffer(), TailBuffer()
    started = time.monotonic()
    completed: asyncssh.SSHCompletedProcess | None = None
    error: str | None = None
    timed_out = False
    try:
        async with asyncio.timeout(ctx.timeout_s):
            async with asyncssh.connect(target.host, target.port, **target.options) as conn:
                process = await conn.create_process(
                    target.command, encoding=None, stdin=asyncssh.DEVNULL
                )
                await asyncio.gather(
                    _pump(process.stdout, stdout, ctx.output, "stdout"),
                    _pump(process.stderr, stderr, ctx.output, "stderr"),
                )
                completed = await process.wait()
    except TimeoutError:
        timed_out = True
    except (asyncssh.Error, OSError) as exc:
        error = _connection_error(exc)
    result = ActionResult(
        status="completed",
        stdout=stdout.text(),
        stderr=stderr.text(),
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    if timed_out:
        result.status, result.error = (
            "timeout",
            f"timed out after {format_seconds(ctx.timeout_s or 0)}s",
        )
    elif error is not None or completed is None:
        result.status, result.error = "failed", error or "ssh: no exit status"
    elif completed.exit_signal:
        result.status, result.error = "failed", f"killed by SIG{completed.exit_signal[0]}"
        result.exit_code = completed.returncode
    else:
        result.exit_code = completed.exit_status
        if result.exit_code != 0:
            result.status, result.error = "failed", f"exit code {result.exit_code}"
    return result


@register_action("ssh")
def ssh(ctx: JobContext) -> ActionResult:
    try:
        target = build_target(ctx)
    except ParamError as exc:
        return ActionResult.failure(str(exc))
    return run_cancellable(ctx, lambda: run_ssh(ctx, target))
