"""The ``shell`` action: run a command with ``<shell> -c`` in its own process group."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time

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
EXIT_POLL_S = 0.05


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
    ``ctx.output`` as they arrive. One thread does it all (see `ProcessWatch`): no reader or
    timer threads per job.
    """
    started = time.monotonic()
    try:
        process = start_process(argv, env=ctx.env, cwd=cwd)
    except (OSError, ValueError) as exc:
        return ActionResult.failure(
            f"cannot start {argv[0]}: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    # The pidfd is opened before the process becomes killable, so no kill can reap it first.
    watch = ProcessWatch(
        process, ctx.output, job_id=ctx.job_id, timeout_s=ctx.timeout_s, started=started
    )
    ctx.process_started(process)
    returncode, held_open = watch.run()
    duration_ms = int((watch.exited_at - started) * 1000)
    stderr_text = watch.stderr.text()
    if held_open:
        logger.warning("job %s: a background process still holds its output open", ctx.job_id)
        stderr_text += "\n[switchyard: stopped reading output held open by a background process]"

    result = ActionResult(
        status="completed",
        exit_code=returncode,
        stdout=watch.stdout.text(),
        stderr=stderr_text,
        duration_ms=duration_ms,
    )
    if watch.timed_out:
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


def start_process(
    argv: list[str], *, env: dict[str, str] | None, cwd: str | None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session (and process group) of its own, both streams piped."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


class ProcessWatch:
    """Reads a child's two pipes, notices its exit and enforces its timeout from one thread.

    The child's exit is seen through a pidfd (Linux ≥ 5.3), so a job that exits while a
    background process it started still holds its output open is noticed at once; where pidfds
    are missing, the exit is polled every `EXIT_POLL_S` while the pipes stay open. After the
    exit, the pipes are drained for at most `PIPE_DRAIN_TIMEOUT_S`. On timeout the process group
    is killed from a thread of its own (the kill waits out a grace period) while reading goes
    on."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        output: OutputSink,
        *,
        job_id: str,
        timeout_s: float | None,
        started: float,
        drain_timeout: float = PIPE_DRAIN_TIMEOUT_S,
        exit_via_pidfd: bool = True,
    ):
        """`exit_via_pidfd=False` watches the exit as on a system without pidfds."""
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.output = output
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.drain_timeout = drain_timeout
        self.stdout, self.stderr = TailBuffer(), TailBuffer()
        self.deadline = started + timeout_s if timeout_s else None
        self.timed_out = False
        self.exited_at = started
        self._killer: threading.Thread | None = None
        self._streaming = True
        self._pidfd = _open_pidfd(process.pid) if exit_via_pidfd else None
        self._pipes = {
            process.stdout.fileno(): (self.stdout, "stdout"),
            process.stderr.fileno(): (self.stderr, "stderr"),
        }

    def run(self) -> tuple[int, bool]:
        """Returns the exit code and whether a pipe was still held open after the drain."""
        process = self.process
        pidfd = self._pidfd
        exited = False
        drain_deadline = 0.0
        with selectors.DefaultSelector() as selector:
            for fd in self._pipes:
                selector.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            try:
                while self._pipes or not exited:
                    now = time.monotonic()
                    if exited and now >= drain_deadline:
                        break
                    timeout = self._wait_for(now, exited, pidfd, drain_deadline)
                    for key, _ in selector.select(timeout):
                        if key.fd == pidfd:
                            selector.unregister(pidfd)
                            pidfd = _close_pidfd(pidfd)
                        else:
                            self._read(selector, key.fd)
                    if not exited and self._has_exited(pidfd):
                        exited = True
                        self.exited_at = time.monotonic()
                        drain_deadline = self.exited_at + self.drain_timeout
                    if not exited:
                        self._enforce_timeout()
            finally:
                _close_pidfd(pidfd)
                process.stdout.close()  # type: ignore[union-attr]
                process.stderr.close()  # type: ignore[union-attr]
        if self._killer is not None:
            self._killer.join()  # the whole group is gone (or was sent SIGKILL)
        return process.wait(), bool(self._pipes)

    def _wait_for(
        self, now: float, exited: bool, pidfd: int | None, drain_deadline: float
    ) -> float | None:
        limits = []
        if exited:
            limits.append(drain_deadline - now)
        else:
            if self.deadline is not None and not self.timed_out:
                limits.append(self.deadline - now)
            if pidfd is None:
                # Pipes open: poll for the exit now and then; none: `_has_exited` blocks.
                limits.append(EXIT_POLL_S if self._pipes else 0)
        return max(0.0, min(limits)) if limits else None

    def _read(self, selector: selectors.BaseSelector, fd: int) -> None:
        buffer, name = self._pipes[fd]
        chunk = os.read(fd, _READ_SIZE)
        if not chunk:
            selector.unregister(fd)
            del self._pipes[fd]
            return
        buffer.feed(chunk)
        if self._streaming:
            try:
                self.output.write(name, chunk)
            except Exception:
                # The live stream is a convenience; the job and its captured tail go on.
                logger.exception(
                    "job %s: live output failed; only the report carries it", self.job_id
                )
                self._streaming = False

    def _has_exited(self, pidfd: int | None) -> bool:
        if pidfd is not None:
            return False  # the pidfd has not fired
        if not self._pipes:
            # Nothing left to select on: block in wait() until the exit or the deadline.
            remaining = None
            if self.deadline is not None and not self.timed_out:
                remaining = max(0.0, self.deadline - time.monotonic())
            try:
                self.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                return False
            return True
        return self.process.poll() is not None

    def _enforce_timeout(self) -> None:
        if self.deadline is None or self.timed_out or time.monotonic() < self.deadline:
            return
        self.timed_out = True
        logger.info("job %s timed out after %ss; killing it", self.job_id, self.timeout_s)
        self._killer = threading.Thread(
            target=kill_process_group, args=(self.process,), name="switchyard-kill", daemon=True
        )
        self._killer.start()


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _close_pidfd(pidfd: int | None) -> None:
    if pidfd is not None:
        os.close(pidfd)


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
