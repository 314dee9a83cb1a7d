"""Job directories left by an agent that was killed are removed when an agent starts; those of
live agents never are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agents.agent.runner import Runner
from agents.agent.workspace import LOCK_NAME, PREFIX, Workspace, sweep_abandoned
from tests.agent.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]

# An agent's runner in a process of its own, running a job that outlives the test's patience.
AGENT_RUNNING_A_JOB = """
import sys
from agents.agent.runner import Runner
from tests.agent.helpers import make_spec
runner = Runner(slots=1, work_root=sys.argv[1])
runner.run(make_spec('echo $$ > "$0"; touch "$(dirname "$SWITCHYARD_OUTPUT")/big"; sleep 600'
                     .replace("$0", sys.argv[2])))
"""


def test_a_killed_agents_job_directories_are_removed_by_the_next_agent(tmp_path: Path) -> None:
    root, pidfile = tmp_path / "work", tmp_path / "job.pid"
    root.mkdir()
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_RUNNING_A_JOB, str(root), str(pidfile)], cwd=ROOT
    )
    try:
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            timeout=20,
            message="the job to start",
        )
        [left] = [p for p in root.iterdir() if p.name.startswith(PREFIX)]
        assert any(job.name.startswith("job-") for job in left.iterdir())
        assert sweep_abandoned(root) == [], "a live agent's directory is never swept"
        agent.kill()
        agent.wait(timeout=10)
    finally:
        agent.kill()
        if pidfile.exists() and pidfile.read_text().strip():
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)  # the orphaned job's group

    assert left.exists(), "nothing cleans up after SIGKILL"
    runner = Runner(slots=1, work_root=str(root))
    try:
        assert not left.exists()
        assert list(root.iterdir()) == [runner.workspace.path]
    finally:
        runner.close()


def test_live_agents_unrelated_and_half_made_directories_are_left_alone(tmp_path: Path) -> None:
    other_agent = Workspace(str(tmp_path))
    unrelated = tmp_path / "switchyard-notes"
    unrelated.mkdir()
    half_made = tmp_path / f".{PREFIX}abc"
    half_made.mkdir()
    no_lock = tmp_path / f"{PREFIX}nolock"
    no_lock.mkdir()

    this_agent = Workspace(str(tmp_path))
    try:
        assert {p.name for p in tmp_path.iterdir()} == {
            other_agent.path.name,
            this_agent.path.name,
            unrelated.name,
            half_made.name,
            no_lock.name,
        }
        assert (other_agent.path / LOCK_NAME).exists()
        other_agent.close()
        assert not other_agent.path.exists()
        other_agent.close()  # closing twice is harmless
    finally:
        this_agent.close()


def test_the_directory_of_a_workspace_closed_without_cleaning_is_swept(tmp_path: Path) -> None:
    """A lock released without removing the directory (what a dead process leaves)."""
    dead = Workspace(str(tmp_path))
    (dead.path / "job-1234").mkdir()
    dead._lock.close()  # the kernel does this for a killed process

    assert sweep_abandoned(tmp_path) == [dead.path]
    assert list(tmp_path.iterdir()) == []
