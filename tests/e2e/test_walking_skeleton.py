"""A workflow runs end to end: API → PostgreSQL → Celery/Redis → a real agent → reports → engine."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime

import pytest
import redis
from celery import Celery

from tests.support import wait_until

pytestmark = pytest.mark.e2e

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}

PIPELINE = textwrap.dedent(
    """
    slug: e2e-pipeline
    name: End-to-end pipeline
    inputs:
      version: {type: string, required: true}
      copies: {type: integer, default: 2}
    nodes:
      - id: build
        action: shell
        with:
          command: |
            echo "building {{ inputs.version }}"
            echo "artifact=app-{{ inputs.version }}.tgz" >> "$SWITCHYARD_OUTPUT"
            echo "copies={{ inputs.copies }}" >> "$SWITCHYARD_OUTPUT"
            echo "job=$SWITCHYARD_JOB_ID node=$SWITCHYARD_NODE_ID attempt=$SWITCHYARD_ATTEMPT"
        on: {success: [test_a, test_b, flaky]}
      - id: test_a
        action: shell
        with: {command: "echo testing {{ nodes.build.output.outputs.artifact | shell_quote }}"}
        on: {success: gather}
      - id: test_b
        action: shell
        pool: e2e
        with: {command: "echo b-$SWITCHYARD_WORKFLOW"}
        on: {success: gather}
      - id: flaky
        action: shell
        with: {command: "echo about to fail >&2; exit 3"}
        on: {success: gather, error: recover}
      - id: recover
        action: shell
        with: {command: "echo recovering from {{ nodes.flaky.output.exit_code }}"}
        on: {success: gather}
      - {id: gather, type: join, wait_for: all, on: {success: [ship, never]}}
      - id: ship
        action: shell
        with:
          command: >-
            echo shipping {{ nodes.build.output.outputs.artifact }}
            x{{ nodes.build.output.outputs.copies }}
        run_if: "{{ inputs.copies > 0 }}"
      - id: never
        action: shell
        with: {command: "echo should not run"}
        run_if: "{{ inputs.copies > 100 }}"
    outputs:
      artifact: "{{ nodes.build.output.outputs.artifact }}"
      shipped: "{{ nodes.ship.output.stdout | trim }}"
    """
)


def wait_for_terminal(client, execution_id: str, timeout: float = 60) -> dict:
    def terminal():
        body = client.get(f"/api/v1/executions/{execution_id}/").json()
        return body if body["status"] in TERMINAL else None

    return wait_until(terminal, timeout=timeout, what=f"execution {execution_id} to finish")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_pipeline_runs_end_to_end(stack):
    with stack.client() as client:
        created = client.post("/api/v1/workflows/", json={"definition": PIPELINE})
        assert created.status_code == 201, created.text
        assert created.json()["published_version"] == 1

        started = client.post(
            "/api/v1/workflows/e2e-pipeline/execute/",
            json={"inputs": {"version": "2.4.1", "copies": "3"}, "labels": {"team": "sre"}},
        )
        assert started.status_code == 201, started.text
        execution = wait_for_terminal(client, started.json()["id"])

    assert execution["status"] == "completed", execution["error"]
    assert execution["inputs"] == {"version": "2.4.1", "copies": 3}
    assert execution["trigger"]["kind"] == "manual"
    assert execution["trigger"]["user"] == "admin"
    assert execution["outputs"] == {
        "artifact": "app-2.4.1.tgz",
        "shipped": "shipping app-2.4.1.tgz x3",
    }
    assert execution["labels"] == {"team": "sre"}

    nodes = {node["id"]: node for node in execution["nodes"]}
    assert {n: nodes[n]["status"] for n in nodes} == {
        "build": "completed",
        "test_a": "completed",
        "test_b": "completed",
        "flaky": "failed",
        "recover": "completed",
        "gather": "completed",
        "ship": "completed",
        "never": "skipped",
    }
    assert nodes["never"]["reason"] == "run_if is false"

    jobs = {job["node_id"]: job for job in execution["jobs"]}
    assert set(jobs) == {"build", "test_a", "test_b", "flaky", "recover", "ship"}
    assert all(job["attempt"] == 1 for job in jobs.values())
    build = jobs["build"]
    assert build["status"] == "completed" and build["exit_code"] == 0
    assert build["outputs"] == {"artifact": "app-2.4.1.tgz", "copies": "3"}
    assert f"job={build['id']} node=build attempt=1" in build["stdout"]
    assert jobs["test_a"]["stdout"].strip() == "testing app-2.4.1.tgz"
    assert jobs["test_b"]["stdout"].strip() == "b-e2e-pipeline"
    assert jobs["test_b"]["pool"] == "e2e" and jobs["test_a"]["pool"] == "default"
    assert jobs["flaky"]["status"] == "failed" and jobs["flaky"]["exit_code"] == 3
    assert "about to fail" in jobs["flaky"]["stderr"]
    assert jobs["recover"]["stdout"].strip() == "recovering from 3"
    for job in jobs.values():
        assert job["agent"] == "e2e-agent"
        queued, dispatched = parse_time(job["queued_at"]), parse_time(job["dispatched_at"])
        started_at, finished = parse_time(job["started_at"]), parse_time(job["finished_at"])
        assert queued <= dispatched <= started_at <= finished
        assert job["duration_ms"] is not None and job["duration_ms"] >= 0
    assert parse_time(jobs["build"]["finished_at"]) <= parse_time(jobs["test_a"]["started_at"])
    assert parse_time(jobs["recover"]["finished_at"]) <= parse_time(jobs["ship"]["started_at"])

    kinds = [event["kind"] for event in execution["log"]]
    assert kinds[0] == "execution.created" and kinds[-1] == "execution.finished"
    messages = "\n".join(event["message"] for event in execution["log"])
    for expected in (
        "job for 'build' (attempt 1) queued on pool.default",
        "claimed by e2e-agent",
        "job for 'flaky' (attempt 1) failed (exit code 3)",
        "run_if of 'never' is False",
    ):
        assert expected in messages
    assert any(e["level"] == "error" and e["node_id"] == "flaky" for e in execution["log"])


def test_unhandled_failure_fails_the_execution_and_starts_nothing_new(stack):
    definition = {
        "slug": "e2e-unhandled",
        "nodes": [
            {
                "id": "boom",
                "action": "shell",
                "with": {"command": "exit 7"},
                "on": {"success": ["after"]},
            },
            {"id": "after", "action": "shell", "with": {"command": "echo never"}},
        ],
    }
    with stack.client() as client:
        assert client.post("/api/v1/workflows/", json={"definition": definition}).status_code == 201
        started = client.post("/api/v1/workflows/e2e-unhandled/execute/", json={})
        execution = wait_for_terminal(client, started.json()["id"])
        log = client.get(f"/api/v1/executions/{execution['id']}/log/?level=error").json()
    assert execution["status"] == "failed"
    assert "boom" in execution["error"] and "exit code 7" in execution["error"]
    assert [job["node_id"] for job in execution["jobs"]] == ["boom"]
    assert {n["id"]: n["status"] for n in execution["nodes"]} == {
        "boom": "failed",
        "after": "skipped",
    }
    assert log["results"] and all(event["level"] == "error" for event in log["results"])


def test_shell_timeout_kills_the_step(stack, tmp_path):
    pidfile = tmp_path / "child.pid"
    definition = {
        "slug": "e2e-timeout",
        "nodes": [
            {
                "id": "slow",
                "action": "shell",
                "timeout": "1s",
                "with": {"command": f"sleep 120 & echo $! > {pidfile}; wait"},
            },
        ],
    }
    with stack.client() as client:
        assert client.post("/api/v1/workflows/", json={"definition": definition}).status_code == 201
        started = client.post("/api/v1/workflows/e2e-timeout/execute/", json={})
        execution = wait_for_terminal(client, started.json()["id"])
    assert execution["status"] == "failed"
    [job] = execution["jobs"]
    assert job["status"] == "timeout"
    child = int(pidfile.read_text())

    def child_gone() -> bool:
        try:
            with open(f"/proc/{child}/stat") as handle:
                return handle.read().split(")")[-1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    wait_until(child_gone, timeout=10, what="the timed-out step's child process to die")


def test_same_job_published_many_times_runs_once(stack, tmp_path):
    """Duplicate doorbells race to claim the job; exactly one wins and runs it."""
    ledger = tmp_path / "ledger.txt"
    definition = {
        "slug": "e2e-duplicates",
        "nodes": [
            {
                "id": "effect",
                "action": "shell",
                "pool": "dup",
                "with": {"command": f'echo "$SWITCHYARD_JOB_ID $$" >> {ledger}'},
            },
        ],
    }
    with stack.client() as client:
        assert client.post("/api/v1/workflows/", json={"definition": definition}).status_code == 201
        started = client.post("/api/v1/workflows/e2e-duplicates/execute/", json={}).json()
        [job] = started["jobs"]
        wait_until(
            lambda: (
                client.get(f"/api/v1/executions/{started['id']}/").json()["jobs"][0]["status"]
                == "dispatched"
            ),
            timeout=30,
            what="the job to be published",
        )
        broker = Celery(broker=stack.redis_url)
        broker.conf.task_serializer = "json"
        for _ in range(7):
            broker.send_task(
                "switchyard.run_job", args=[job["id"]], queue="pool.dup", routing_key="pool.dup"
            )
        queue = redis.Redis.from_url(stack.redis_url)
        assert queue.llen("pool.dup") == 8
        stack.start_agent("dup-agent", ["dup"], concurrency=8)
        execution = wait_for_terminal(client, started["id"])

        def unacked_for_job() -> int:
            """Messages of this job still delivered but unacknowledged (other tests' killed
            agents may legitimately leave their own messages in the shared hash)."""
            return sum(1 for raw in queue.hvals("unacked") if job["id"].encode() in raw)

        wait_until(
            lambda: queue.llen("pool.dup") == 0 and unacked_for_job() == 0,
            timeout=30,
            what="every duplicate message to be consumed and acknowledged",
        )
    assert execution["status"] == "completed"
    assert len(execution["jobs"]) == 1
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(job["id"])
    assert json.loads(json.dumps(execution["jobs"][0]["agent"])) == "dup-agent"
