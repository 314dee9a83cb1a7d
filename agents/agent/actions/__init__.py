"""Action registry: an action type is a callable from ``JobContext`` to ``ActionResult``.

Adding an action type means adding one module that decorates a function with
``@register_action("name")`` and importing it at the bottom of this file.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

logger = logging.getLogger("switchyard.agent")

Status = Literal["completed", "failed", "timeout"]

KILL_GRACE_S = 2.0
KILLED = "killed by the control plane"


class OutputSink(Protocol):
    """Where an action sends raw output as it is produced (the live stream to the server).

    ``write`` is called from reader threads and must never block on the network.
    """

    def write(self, stream: str, data: bytes) -> None: ...


class _NullSink:
    def write(self, stream: str, data: bytes) -> None:
        pass


NULL_SINK: OutputSink = _NullSink()


def _no_cancel_hook(callback: Callable[[], None]) -> Callable[[], None]:
    return lambda: None


@dataclass
class JobContext:
    """What an action gets to see: its parameters and a ready-made child environment.

    ``output`` receives stdout/stderr bytes while the job runs; ``network_allow`` is the claim's
    allow-list for outbound requests; ``on_cancel(callback)`` runs ``callback`` (from another
    thread) when the job is killed, for actions that are not a killable process group, and
    returns a function that unregisters it.
    """

    job_id: str
    action: str
    params: dict[str, Any]
    env: dict[str, str]
    timeout_s: float | None
    workdir: Path
    output_path: Path
    execution_id: str = ""
    node_id: str = ""
    attempt: int = 1
    workflow: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    process_started: Callable[[subprocess.Popen[bytes]], None] = lambda process: None
    output: OutputSink = NULL_SINK
    network_allow: tuple[str, ...] = ()
    on_cancel: Callable[[Callable[[], None]], Callable[[], None]] = _no_cancel_hook


@dataclass
class ActionResult:
    """The outcome reported to the control plane."""

    status: Status
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    duration_ms: int | None = None  # None: the runner times the job
    error: str | None = None
    http: dict[str, Any] | None = None

    @classmethod
    def failure(cls, error: str, **fields: Any) -> ActionResult:
        return cls(status="failed", error=error, **fields)


Action = Callable[[JobContext], ActionResult]

ACTIONS: dict[str, Action] = {}


def register_action(name: str) -> Callable[[Action], Action]:
    """Register ``func`` as the implementation of action type ``name``."""

    def decorator(func: Action) -> Action:
        if name in ACTIONS and ACTIONS[name] is not func:
            raise ValueError(f"action type {name!r} is already registered")
        ACTIONS[name] = func
        return func

    return decorator


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; ``False`` once the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("not allowed to signal process group %s", pgid)
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group.

    Orphaned zombies stay in the group until their new parent reaps them, which never happens
    under a PID 1 that does not reap; on Linux they are recognised through ``/proc``.
    """
    if not _signal_group(pgid, 0):
        return False
    try:
        entries = [entry for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return True
    for entry in entries:
        try:
            with open(os.path.join(entry.path, "stat")) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def kill_process_group(process: subprocess.Popen[bytes], grace: float = KILL_GRACE_S) -> None:
    """SIGTERM a job's whole process group, then SIGKILL whatever is left after ``grace`` s.

    The process must have been started with ``start_new_session=True`` so that its pid is the
    group id and the group holds everything it spawned (but nothing of the agent).
    """
    pgid = process.pid
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    if _signal_group(pgid, signal.SIGKILL):
        logger.info("process group %s ignored SIGTERM for %.1fs; sent SIGKILL", pgid, grace)


from agents.agent.actions import http_request as _http_request  # noqa: E402, F401
from agents.agent.actions import notify as _notify  # noqa: E402, F401
from agents.agent.actions import script as _script  # noqa: E402, F401
from agents.agent.actions import shell as _shell  # noqa: E402, F401
from agents.agent.actions import ssh as _ssh  # noqa: E402, F401
