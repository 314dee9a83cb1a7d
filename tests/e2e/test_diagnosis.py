"""Failure diagnosis of real failing runs on the real stack: a refused port, a timeout, a
non-zero exit and an agent killed mid-job are each classified from what the agent reported."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.e2e.helpers import create, execute, run, wait_for_status
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released without listening)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def diagnose(client, execution: dict) -> dict:
    response = client.post(f"/api/v1/executions/{execution['id']}/diagnose/", json={})
    assert response.status_code == 200, response.text
    return response.json()


def test_refused_port_is_connection_refused(stack):
    definition = {
        "slug": "e2e-diag-refused",
        "nodes": [
            {
                "id": "call",
                "action": "http",
                "with": {"url": f"http://127.0.0.1:{closed_port()}/health"},
            }
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
        assert execution["status"] == "failed"
        diagnosis = diagnose(client, execution)
    assert diagnosis["failed_node"] == "call"
    assert diagnosis["cause"]["kind"] == "connection_refused", diagnosis["cause"]
    assert "listening" in diagnosis["suggestion"]


def test_timeout_is_timeout(stack):
    definition = {
        "slug": "e2e-diag-timeout",
        "nodes": [
            {"id": "slow", "action": "shell", "timeout": "1s", "with": {"command": "sleep 60"}}
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
        diagnosis = diagnose(client, execution)
    assert diagnosis["failed_node"] == "slow"
    assert diagnosis["cause"]["kind"] == "timeout", diagnosis["cause"]
    assert diagnosis["cause"]["evidence"]["status"] == "timeout"


def test_non_zero_exit_is_exit_code_and_changes_are_reported(stack):
    definition = {
        "slug": "e2e-diag-exit",
        "inputs": {"code": {"type": "integer", "default": 0}},
        "nodes": [
            {
                "id": "check",
                "action": "shell",
                "with": {"command": "echo checking >&2; exit {{ inputs.code }}"},
            }
        ],
    }
    with stack.client() as client:
        ok = run(client, definition, {"code": 0})
        assert ok["status"] == "completed"
        bad = wait_for_status(client, execute(client, "e2e-diag-exit", {"code": 3})["id"])
        assert bad["status"] == "failed"
        diagnosis = diagnose(client, bad)
        diff = client.get(f"/api/v1/executions/{bad['id']}/diff/?against=last_success").json()
    cause = diagnosis["cause"]
    assert cause["kind"] == "exit_code", cause
    assert cause["evidence"]["exit_code"] == 3
    assert "checking" in cause["evidence"]["stderr_tail"]
    changes = diagnosis["changes"]
    assert changes["last_success"] == ok["id"]
    assert changes["inputs"]["changed"] == ["code"]
    assert changes["version"]["changed"] is False
    assert changes["agent"]["failed_run"] == changes["agent"]["last_success"] == "e2e-agent"
    assert diagnosis["history"]["failures"] >= 1
    (node,) = diff["nodes"]
    assert (node["left"]["exit_code"], node["right"]["exit_code"]) == (0, 3)


def test_killed_agent_is_agent_lost(stack):
    doomed = stack.start_agent("diag-doomed", ["diag-kill"])
    definition = {
        "slug": "e2e-diag-agent-lost",
        "nodes": [
            {"id": "work", "action": "shell", "pool": "diag-kill", "with": {"command": "sleep 300"}}
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-diag-agent-lost")

        def running():
            body = client.get(f"/api/v1/executions/{started['id']}/").json()
            return any(job["status"] == "running" for job in body["jobs"])

        wait_until(running, timeout=30, what="the job to run on the doomed agent")
        os.killpg(doomed.popen.pid, signal.SIGKILL)
        execution = wait_for_status(client, started["id"], timeout=60)
        assert execution["status"] == "failed"
        diagnosis = diagnose(client, execution)
    assert diagnosis["cause"]["kind"] == "agent_lost", diagnosis["cause"]
    assert diagnosis["cause"]["evidence"]["agent"] == "diag-doomed"
