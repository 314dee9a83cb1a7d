"""The ``shell`` action: run a command with ``<shell> -c`` in its own process group."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from typing import IO

from agents.agent.actions import (
    KILLED,
    ActionResult,
    JobContext,
    OutputSink,
    kill_process_group,
    register_action,
)

logger = logging.getLogger("switchyard.agent")

DEFAULT_SHELL = "/bin/sh"
OUTPUT_LIMIT = 1024 * 1024
PIPE_DRAIN_TIMEOUT_S = 5.0
_READ_SIZE = 64 * 1024


class TailBuffer:
    """Keeps the last ``limit`` bytes of a stream so a chatty job cannot exhaust memory."""

    def __init__(self, limit: int = OUTPUT_LIMIT):
        self.limit = limit
        self.dropped = 0
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self._data.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[switchyard: output truncated, first {self.dropped} bytes dropped]\n{text}"
        return text


def _pump(stream: IO[bytes], buffer: TailBuffer, sink: OutputSink, name: str) -> None:
    """Copy one pipe into the capped tail (for the final report) and the live stream."""
    with stream:
        while chunk := stream.read1(_READ_SIZE):  # type: ignore[attr-defined]
            buffer.feed(chunk)
            sink.write(name, chunk)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}"


def run_process(ctx: JobContext, argv: list[str], *, cwd: str | None = None) -> ActionResult:
    """Run ``argv`` in a new session, capture both streams, enforce ``ctx.timeout_s``.

    Reusable by other subprocess-based actions (e.g. ``script``). Both streams are copied to
    ``ctx.output`` as they arrive.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=ctx.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        return ActionResult.failure(
            f"cannot start {argv[0]}: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    ctx.process_started(process)
    stdout, stderr = TailBuffer(), TailBuffer()
    assert process.stdout is not None and process.stderr is not None
    readers = [
        threading.Thread(
            target=_pump, args=(process.stdout, stdout, ctx.output, "stdout"), daemon=True
        ),
        threading.Thread(
            target=_pump, args=(process.stderr, stderr, ctx.output, "stderr"), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()

    # A blocking wait() returns the moment the child exits; wait(timeout=...) would poll with
    # growing sleeps and add milliseconds to every job. A timer enforces the timeout instead.
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        logger.info("job %s timed out after %ss; killing it", ctx.job_id, ctx.timeout_s)
        kill_process_group(process)

    timer = None
    if ctx.timeout_s:
        timer = threading.Timer(ctx.timeout_s, on_timeout)
        timer.daemon = True
        timer.start()
    try:
        returncode = process.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if timed_out.is_set():
        timer.join()
    duration_ms = int((time.monotonic() - started) * 1000)

    drain_deadline = time.monotonic() + PIPE_DRAIN_TIMEOUT_S
    for reader in readers:
        reader.join(timeout=max(0.0, drain_deadline - time.monotonic()))
    stderr_text = stderr.text()
    if any(reader.is_alive() for reader in readers):
        logger.warning("job %s: a background process still holds its output open", ctx.job_id)
        stderr_text += "\n[switchyard: stopped reading output held open by a background process]"

    result = ActionResult(
        status="completed",
        exit_code=returncode,
        stdout=stdout.text(),
        stderr=stderr_text,
        duration_ms=duration_ms,
    )
    if timed_out.is_set():
        result.status = "timeout"
        result.error = f"timed out after {format_seconds(ctx.timeout_s or 0)}s"
    elif ctx.cancelled.is_set():
        result.status = "failed"
        result.error = KILLED  # the runner replaces it with the recorded kill reason
    elif returncode < 0:
        result.status = "failed"
        result.error = f"killed by {_signal_name(-returncode)}"
    elif returncode != 0:
        result.status = "failed"
        result.error = f"exit code {returncode}"
    return result


@register_action("shell")
def shell(ctx: JobContext) -> ActionResult:
    """Params: ``command`` (required), ``cwd``, ``shell`` (default /bin/sh); ``env`` and
    ``parse`` are applied by the runner for every action."""
    command = ctx.params.get("command")
    if not isinstance(command, str) or not command.strip():
        return ActionResult.failure("params.command is required and must be a non-empty string")
    shell_path = ctx.params.get("shell") or DEFAULT_SHELL
    cwd = ctx.params.get("cwd") or None
    if not isinstance(shell_path, str):
        return ActionResult.failure("params.shell must be a string")
    if cwd is not None and not isinstance(cwd, str):
        return ActionResult.failure("params.cwd must be a string")
    return run_process(ctx, [shell_path, "-c", command], cwd=cwd)
