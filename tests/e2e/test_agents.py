"""The agent fleet end to end: label routing, failover when an agent dies, fencing of a frozen
agent's late report, live output while a job runs, kill within 2 s, and secret masking."""

from __future__ import annotations

import base64
import os
import signal

import pytest

from tests.e2e.helpers import create, execute, wait_for_status
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def job_of(client, execution_id: str, node_id: str, attempt: int = 1) -> dict | None:
    body = client.get(f"/api/v1/executions/{execution_id}/").json()
    return next(
        (j for j in body["jobs"] if j["node_id"] == node_id and j["attempt"] == attempt), None
    )


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_labels_route_jobs_and_a_missing_label_waits_until_an_agent_comes(stack):
    stack.start_agent("eu-1", ["lab"], labels={"os": "linux", "region": "eu"})
    stack.start_agent("us-1", ["lab"], labels={"os": "linux", "region": "us"})
    definition = {
        "slug": "e2e-labels",
        "nodes": [
            {
                "id": "in_us",
                "action": "shell",
                "pool": "lab",
                "labels": {"region": "us"},
                "with": {"command": "echo us"},
            },
            {
                "id": "in_eu",
                "action": "shell",
                "pool": "lab",
                "labels": {"region": "eu"},
                "with": {"command": "echo eu"},
            },
            {
                "id": "on_mars",
                "action": "shell",
                "pool": "lab",
                "labels": {"region": "mars"},
                "with": {"command": "echo mars"},
            },
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-labels")
        waiting = wait_until(
            lambda: (j := job_of(client, started["id"], "on_mars")) and j["wait_reason"] and j,
            timeout=30,
            what="the mars job to report why it waits",
        )
        assert waiting["status"] == "pending"
        assert "with labels region=mars" in waiting["wait_reason"]
        stack.start_agent("mars-1", ["lab"], labels={"region": "mars"})
        execution = wait_for_status(client, started["id"])
    agents = {job["node_id"]: job["agent"] for job in execution["jobs"]}
    assert agents == {"in_us": "us-1", "in_eu": "eu-1", "on_mars": "mars-1"}
    assert execution["status"] == "completed"


def test_a_killed_agent_loses_its_job_which_is_retried_on_another(stack):
    first = stack.start_agent("failover-a", ["failover"])
    definition = {
        "slug": "e2e-failover",
        "nodes": [
            {
                "id": "work",
                "action": "shell",
                "pool": "failover",
                "retries": 1,
                "with": {"command": '[ "$SWITCHYARD_ATTEMPT" = 1 ] && sleep 300; echo done'},
            },
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-failover")
        wait_until(
            lambda: (j := job_of(client, started["id"], "work")) and j["status"] == "running",
            timeout=30,
            what="attempt 1 to run",
        )
        os.killpg(first.popen.pid, signal.SIGKILL)
        stack.start_agent("failover-b", ["failover"])
        execution = wait_for_status(client, started["id"], timeout=60)
    assert execution["status"] == "completed"
    jobs = sorted(execution["jobs"], key=lambda job: job["attempt"])
    assert [(j["attempt"], j["status"], j["agent"]) for j in jobs] == [
        (1, "failed", "failover-a"),
        (2, "completed", "failover-b"),
    ]
    assert jobs[0]["error"].startswith("agent lost")
    lost = [
        e for e in execution["log"] if e["kind"] == "job.failed" and "agent lost" in e["message"]
    ]
    assert lost


def test_a_frozen_agents_late_report_is_refused(stack, tmp_path):
    frozen = stack.start_agent("frozen", ["freeze"])
    marker = tmp_path / "ran"
    definition = {
        "slug": "e2e-frozen",
        "nodes": [
            {
                "id": "work",
                "action": "shell",
                "pool": "freeze",
                "retries": 1,
                "with": {"command": f"echo $SWITCHYARD_ATTEMPT >> {marker}; sleep 2; echo done"},
            },
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-frozen")
        wait_until(
            lambda: (j := job_of(client, started["id"], "work")) and j["status"] == "running",
            timeout=30,
            what="attempt 1 to run on the agent that will freeze",
        )
        os.killpg(frozen.popen.pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: (j := job_of(client, started["id"], "work")) and j["status"] == "failed",
                timeout=30,
                what="the frozen agent's job to be failed as lost",
            )
            stack.start_agent("thawed-peer", ["freeze"])
            execution = wait_for_status(client, started["id"], timeout=60)
        finally:
            os.killpg(frozen.popen.pid, signal.SIGCONT)
        log_path = frozen.log
        wait_until(
            lambda: (
                "409" in log_path.read_text(errors="replace")
                or "stale" in log_path.read_text(errors="replace")
            ),
            timeout=30,
            what="the frozen agent to get its late report refused",
        )
        final = client.get(f"/api/v1/executions/{started['id']}/").json()
    assert execution["status"] == "completed"
    jobs = sorted(final["jobs"], key=lambda job: job["attempt"])
    assert [(j["attempt"], j["status"]) for j in jobs] == [(1, "failed"), (2, "completed")]
    assert jobs[0]["error"].startswith("agent lost") and jobs[1]["agent"] == "thawed-peer"
    assert sum(1 for j in final["jobs"] if j["status"] == "completed") == 1


def test_live_output_is_readable_while_the_job_runs(stack, tmp_path):
    flag = tmp_path / "go"
    definition = {
        "slug": "e2e-live",
        "nodes": [
            {
                "id": "talk",
                "action": "shell",
                "with": {
                    "command": f"echo first; printf '\\033[32mgreen\\033[0m\\n'; echo oops >&2; "
                    f"while [ ! -f {flag} ]; do sleep 0.05; done; echo second"
                },
            },
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-live")
        job = wait_until(lambda: job_of(client, started["id"], "talk"), timeout=30, what="job")
        url = f"/api/v1/executions/{started['id']}/jobs/{job['id']}/output/"
        live = wait_until(
            lambda: (body := client.get(url).json()) and "green" in (body["stdout"] or "") and body,
            timeout=30,
            what="live output before the job ends",
        )
        assert live["status"] == "running"
        assert live["stdout"] == "first\n\x1b[32mgreen\x1b[0m\n" and live["stderr"] == "oops\n"
        newer = client.get(f"{url}?after={live['last_seq']}").json()
        assert newer["chunks"] == []
        flag.touch()
        wait_for_status(client, started["id"])
        final = client.get(url).json()
    assert final["stdout"] == "first\n\x1b[32mgreen\x1b[0m\nsecond\n"
    assert [c["seq"] for c in final["chunks"]] == sorted(c["seq"] for c in final["chunks"])


def test_kill_terminates_in_flight_jobs_within_two_seconds(stack, tmp_path):
    pidfile = tmp_path / "child.pid"
    definition = {
        "slug": "e2e-kill",
        "nodes": [
            {
                "id": "stuck",
                "action": "shell",
                "with": {"command": f"sleep 300 & echo $! > {pidfile}; wait"},
            },
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-kill")
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(),
            timeout=30,
            what="the job's child to start",
        )
        child = int(pidfile.read_text())
        response = client.post(f"/api/v1/executions/{started['id']}/kill/", json={})
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        wait_until(
            lambda: process_gone(child),
            timeout=2.5,
            interval=0.02,
            what="the killed job's process group to be gone within 2 s",
        )
        job = wait_until(
            lambda: (
                (j := job_of(client, started["id"], "stuck")) and j["status"] != "running" and j
            ),
            timeout=30,
            what="the kill to be reported",
        )
    assert job["status"] == "cancelled"
    assert job["kill_requested_at"] is not None


def test_secrets_are_masked_in_every_sink(stack):
    value = "sup3r-Secret-Value!"
    encoded = base64.b64encode(value.encode()).decode()
    definition = {
        "slug": "e2e-secret",
        "nodes": [
            {
                "id": "leak",
                "action": "shell",
                "with": {
                    "command": 'echo plain=$TOKEN; echo b64=$(printf %s "$TOKEN" | base64); '
                    'echo "out=$TOKEN" >> "$SWITCHYARD_OUTPUT"; echo err=$TOKEN >&2',
                    "env": {"TOKEN": "{{ secrets.e2e_token }}"},
                },
            },
        ],
    }
    with stack.client() as client:
        created = client.post("/api/v1/secrets/", json={"name": "e2e_token", "value": value})
        assert created.status_code == 201
        create(client, definition)
        started = execute(client, "e2e-secret")
        execution = wait_for_status(client, started["id"])
        [job] = execution["jobs"]
        output = client.get(f"/api/v1/executions/{started['id']}/jobs/{job['id']}/output/").text
        log = client.get(f"/api/v1/executions/{started['id']}/log/").text
        detail = client.get(f"/api/v1/executions/{started['id']}/").text
        secrets = client.get("/api/v1/secrets/").text
    assert execution["status"] == "completed"
    assert "plain=***" in job["stdout"] and "err=***" in job["stderr"]
    assert job["outputs"] == {"out": "***"}
    for sink in (output, log, detail, secrets, job["stdout"], job["stderr"]):
        assert value not in sink and encoded not in sink
