"""The README's quick start, `make run` (`manage.py runstack`), as a new user meets it: the
embedded default (SQLite and the bundled Redis, no DATABASE_URL or REDIS_URL), the example
workflows loaded, a local agent enrolled. A run started through the API with the printed
token completes on that agent; when one of the stack's processes dies, the stack stops with
an error naming it and leaves none of its processes behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chaos.harness import children_of
from orchestrator.localstack import ROOT, free_port, wait_for
from tests.agent.helpers import pid_alive
from tests.e2e.helpers import wait_for_status

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT_S = 180


def child_processes(pid: int) -> dict[int, str]:
    """The direct children of `pid` and their command lines."""
    return {
        child: Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for child in children_of(pid)
    }


@pytest.fixture
def quickstart(tmp_path):
    """`manage.py runstack` on a fresh var directory, with the environment of a new clone."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("SWITCHYARD_")
    }
    env |= {"SWITCHYARD_VAR_DIR": str(tmp_path / "var"), "DEBUG": "1"}
    port = free_port()
    log = (tmp_path / "runstack.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"runstack exited with {process.returncode}:\n{log.read()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(
            ready, timeout=STARTUP_TIMEOUT_S, what="the quick start's web server", interval=0.2
        )
        token = json.loads((tmp_path / "var" / "credentials.json").read_text())["token"]
        yield process, url, token, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_quick_start_runs_an_example_and_stops_when_beat_dies(quickstart):
    process, url, token, log = quickstart
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}) as client:
        slugs = {
            w["slug"] for w in client.get("/api/v1/workflows/?page_size=100").json()["results"]
        }
        assert {"hello", "build-and-verify", "scheduled-maintenance"} <= slugs

        started = client.post("/api/v1/workflows/hello/execute/", json={"inputs": {"who": "Ada"}})
        assert started.status_code == 201, started.text
        execution = wait_for_status(client, started.json()["id"], timeout=60)
        assert execution["status"] == "completed", execution
        (greet,) = execution["jobs"]
        assert greet["stdout"].startswith("Hello, Ada from ")

    children = child_processes(process.pid)
    roles = {
        "web": "uvicorn",
        "control": " worker ",
        "beat": " beat ",
        "agent": "agents.agent run",
        "redis": "redis-server",
    }
    found = {
        role: [pid for pid, cmd in children.items() if marker in cmd]
        for role, marker in roles.items()
    }
    assert all(len(pids) == 1 for pids in found.values()), children
    assert "--beat" not in children[found["control"][0]]

    os.killpg(found["beat"][0], signal.SIGKILL)
    wait_for(lambda: process.poll() is not None, timeout=60, what="runstack to stop")
    log.seek(0)
    output = log.read()
    assert process.returncode != 0
    assert "beat exited" in output
    assert not [pid for pid in children if pid_alive(pid)], output
