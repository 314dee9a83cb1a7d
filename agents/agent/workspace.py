"""The agent's own directory for its jobs' private directories, and the sweep of those that
agents killed without a chance to clean up left behind.

Job directories are removed when their job ends, but an agent killed mid-job (SIGKILL, the OOM
killer, a power cut of a container) leaves them. On the default memory file system (`/dev/shm`)
they would hold memory until the host reboots. So each agent makes one directory of its own and
keeps an exclusive `flock` on a file in it while it lives; the kernel drops the lock when the
process dies, however it dies. A starting agent removes every agent directory whose lock it can
take: their owners are gone. Several agents may share a host and its work root; a live agent's
lock is never free, so its directory is never swept.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

logger = logging.getLogger("switchyard.agent")

PREFIX = "switchyard-agent-"
WORK_DIR_ENV = "SWITCHYARD_AGENT_WORK_DIR"
LOCK_NAME = ".owner.lock"
MEMORY_FS = Path("/dev/shm")


def default_work_root(
    environ: Mapping[str, str] = os.environ, memory_fs: Path = MEMORY_FS
) -> str | None:
    """Where jobs' private directories (their output file, a script's file) are made:
    `SWITCHYARD_AGENT_WORK_DIR` if set, else the memory file system `/dev/shm` when it is a
    writable directory, else the system's temporary directory (None).

    The files are small and live for one job. On a disk file system, creating and deleting
    them waits on the file system's journal, which a PostgreSQL on the same disk keeps busy:
    deleting one directory took a millisecond of every job's time in the W1 benchmark."""
    configured = environ.get(WORK_DIR_ENV)
    if configured:
        return configured
    if memory_fs.is_dir() and os.access(memory_fs, os.W_OK | os.X_OK):
        return str(memory_fs)
    return None


class WorkspaceError(Exception):
    """The work root cannot hold this agent's directory (missing, not writable...)."""


class Workspace:
    """A directory under `root` (default: `default_work_root()`) owned by this process until
    `close` (or its death)."""

    def __init__(self, root: str | None = None) -> None:
        """Raises `WorkspaceError` if the directory cannot be made under `root`."""
        root_path = Path(root or default_work_root() or tempfile.gettempdir())
        sweep_abandoned(root_path)
        try:
            # Made under a name the sweep ignores and renamed once locked, so no other agent's
            # sweep can ever see it unlocked.
            making = Path(tempfile.mkdtemp(prefix=f".{PREFIX}", dir=root_path))
            self._lock: IO[str] | None = open(making / LOCK_NAME, "w")  # noqa: SIM115 (for life)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = making.with_name(making.name[1:])
            making.rename(self.path)
        except OSError as error:
            raise WorkspaceError(
                f"cannot make the agent's job directory in {root_path} "
                f"(set {WORK_DIR_ENV} to a writable directory): {error.strerror or error}"
            ) from error

    def close(self) -> None:
        """Remove the directory (with whatever jobs left in it) and release it."""
        if self._lock is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()
        self._lock = None


def sweep_abandoned(root: Path) -> list[Path]:
    """Remove the agent directories under `root` whose owner is dead; returns them."""
    swept = []
    try:
        entries = list(os.scandir(root))
    except OSError as error:
        logger.warning("cannot look for abandoned job directories in %s: %s", root, error)
        return swept
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            lock = open(Path(entry.path) / LOCK_NAME)  # noqa: SIM115 (closed below)
        except OSError:
            continue  # not ours to judge (another user's, or no lock file)
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its agent is alive
            shutil.rmtree(entry.path, ignore_errors=True)
        swept.append(Path(entry.path))
    if swept:
        logger.info("removed %d job directories of agents that died: %s", len(swept), root)
    return swept
