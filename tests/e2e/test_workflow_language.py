"""The workflow language end to end: retries, timeouts, conditions, waits, sub-workflows and
approval gates, on the real stack."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import (
    create,
    execute,
    node_statuses,
    parse_time,
    run,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


def test_a_step_that_fails_twice_is_retried_with_its_delays(stack, tmp_path):
    counter = tmp_path / "attempts"
    definition = {
        "slug": "e2e-retry",
        "nodes": [
            {
                "id": "flaky",
                "action": "shell",
                "retries": {"max": 3, "delay": "1s", "backoff": 2},
                "with": {
                    "command": f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); "
                    f"echo $n > {counter}; echo attempt $n; [ $n -ge 3 ]"
                },
            }
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed"
    jobs = sorted(execution["jobs"], key=lambda job: job["attempt"])
    assert [(j["attempt"], j["status"]) for j in jobs] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
    assert [j["stdout"].strip() for j in jobs] == ["attempt 1", "attempt 2", "attempt 3"]
    first_gap = parse_time(jobs[1]["started_at"]) - parse_time(jobs[0]["finished_at"])
    second_gap = parse_time(jobs[2]["started_at"]) - parse_time(jobs[1]["finished_at"])
    assert first_gap.total_seconds() >= 1.0
    assert second_gap.total_seconds() >= 2.0
    retries = [e for e in execution["log"] if e["kind"] == "retry.scheduled"]
    assert [e["data"]["delay_s"] for e in retries] == [1.0, 2.0]


def test_exhausted_retries_follow_the_error_edge(stack):
    definition = {
        "slug": "e2e-retry-exhausted",
        "nodes": [
            {
                "id": "broken",
                "action": "shell",
                "retries": 1,
                "with": {"command": "exit 4"},
                "on": {"error": "cleanup"},
            },
            {"id": "cleanup", "action": "shell", "with": {"command": "echo cleaned"}},
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed"
    assert node_statuses(execution) == {"broken": "failed", "cleanup": "completed"}
    assert sorted(j["attempt"] for j in execution["jobs"] if j["node_id"] == "broken") == [1, 2]


def test_execution_timeout_cancels_pending_work(stack):
    definition = {
        "slug": "e2e-execution-timeout",
        "timeout": "2s",
        "nodes": [
            {
                "id": "slow",
                "action": "shell",
                "with": {"command": "sleep 5"},
                "on": {"success": "after"},
            },
            {"id": "after", "action": "shell", "with": {"command": "echo never"}},
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "timed_out"
    assert execution["error"] == "execution timeout exceeded"
    assert node_statuses(execution)["after"] == "skipped"
    assert [job["node_id"] for job in execution["jobs"]] == ["slow"]
    duration = parse_time(execution["finished_at"]) - parse_time(execution["started_at"])
    assert 2 <= duration.total_seconds() < 5


def test_condition_takes_one_branch_and_a_wait_holds_no_agent_slot(stack):
    definition = {
        "slug": "e2e-condition",
        "inputs": {"level": {"type": "integer", "default": 7}},
        "nodes": [
            {
                "id": "measure",
                "action": "shell",
                "with": {"command": 'echo "value={{ inputs.level }}" >> "$SWITCHYARD_OUTPUT"'},
                "on": {"success": "high"},
            },
            {
                "id": "high",
                "type": "condition",
                "if": "{{ nodes.measure.output.outputs.value | int > 5 }}",
                "on": {"true": "pause", "false": "calm"},
            },
            {"id": "pause", "type": "wait", "duration": "1s", "on": {"success": "alert"}},
            {"id": "alert", "action": "shell", "with": {"command": "echo alert"}},
            {"id": "calm", "action": "shell", "with": {"command": "echo calm"}},
        ],
    }
    with stack.client() as client:
        high = run(client, definition)
        low = wait_for_status(client, execute(client, "e2e-condition", {"level": 2})["id"])
    assert high["status"] == "completed"
    assert node_statuses(high) == {
        "measure": "completed",
        "high": "completed",
        "pause": "completed",
        "alert": "completed",
        "calm": "skipped",
    }
    assert {j["node_id"] for j in high["jobs"]} == {"measure", "alert"}
    jobs = {job["node_id"]: job for job in high["jobs"]}
    waited = parse_time(jobs["alert"]["queued_at"]) - parse_time(jobs["measure"]["finished_at"])
    assert waited.total_seconds() >= 1.0
    evaluated = [e for e in high["log"] if e["kind"] == "condition.evaluated"]
    assert evaluated[0]["data"] == {
        "expression": "{{ nodes.measure.output.outputs.value | int > 5 }}",
        "value": True,
    }
    assert node_statuses(low)["calm"] == "completed" and node_statuses(low)["alert"] == "skipped"


def test_sub_workflow_passes_outputs_back(stack):
    child = {
        "slug": "e2e-child",
        "inputs": {"name": {"type": "string", "required": True}},
        "nodes": [
            {
                "id": "greet",
                "action": "shell",
                "with": {
                    "command": 'echo "greeting=hello {{ inputs.name }}" >> "$SWITCHYARD_OUTPUT"'
                },
            },
        ],
        "outputs": {"greeting": "{{ nodes.greet.output.outputs.greeting }}"},
    }
    parent = {
        "slug": "e2e-parent",
        "nodes": [
            {
                "id": "call",
                "type": "workflow",
                "workflow": "e2e-child",
                "with": {"name": "parent"},
                "on": {"success": "use"},
            },
            {
                "id": "use",
                "action": "shell",
                "with": {
                    "command": "echo got {{ nodes.call.output.outputs.greeting | shell_quote }}"
                },
            },
        ],
        "outputs": {"said": "{{ nodes.use.output.stdout | trim }}"},
    }
    with stack.client() as client:
        create(client, child)
        execution = run(client, parent)
        [child_run] = execution["children"]
        child_detail = client.get(f"/api/v1/executions/{child_run['id']}/").json()
    assert execution["status"] == "completed", execution["error"]
    assert execution["outputs"] == {"said": "got hello parent"}
    assert child_run["workflow"] == "e2e-child" and child_run["node_id"] == "call"
    assert child_detail["parent"] == execution["id"]
    assert child_detail["trigger"]["kind"] == "parent"
    assert child_detail["outputs"] == {"greeting": "hello parent"}


def test_failed_sub_workflow_fails_its_node(stack):
    definition_child = {
        "slug": "e2e-child-fails",
        "nodes": [{"id": "boom", "action": "shell", "with": {"command": "exit 9"}}],
    }
    parent = {
        "slug": "e2e-parent-fails",
        "nodes": [
            {
                "id": "call",
                "type": "workflow",
                "workflow": "e2e-child-fails",
                "on": {"error": "handle"},
            },
            {
                "id": "handle",
                "action": "shell",
                "with": {"command": "echo {{ nodes.call.output.status }}"},
            },
        ],
    }
    with stack.client() as client:
        create(client, definition_child)
        execution = run(client, parent)
    assert execution["status"] == "completed"
    assert node_statuses(execution)["call"] == "failed"
    handle = next(job for job in execution["jobs"] if job["node_id"] == "handle")
    assert handle["stdout"].strip() == "failed"


def test_approval_gate_pauses_and_follows_the_decision(stack):
    definition = {
        "slug": "e2e-approval",
        "nodes": [
            {
                "id": "check",
                "action": "shell",
                "with": {"command": "echo healthy"},
                "on": {"success": "approve"},
            },
            {
                "id": "approve",
                "type": "approval",
                "message": "Restart? check said {{ nodes.check.output.stdout | trim }}",
                "allow_self_approval": True,
                "on": {"approved": "restart", "rejected": "report"},
            },
            {
                "id": "restart",
                "action": "shell",
                "with": {"command": "echo restarting by {{ nodes.approve.output.respondedBy }}"},
            },
            {"id": "report", "action": "shell", "with": {"command": "echo rejected"}},
        ],
    }
    with stack.client() as client:
        create(client, definition)
        started = execute(client, "e2e-approval")
        paused = wait_for_status(client, started["id"], {"paused"})
        [request] = paused["approvals"]
        assert request["status"] == "pending"
        assert request["message"] == "Restart? check said healthy"
        pending = client.get("/api/v1/approvals/?status=pending").json()["results"]
        assert request["id"] in [item["id"] for item in pending]
        decided = client.post(f"/api/v1/approvals/{request['id']}/approve/", json={"note": "go"})
        assert decided.status_code == 200, decided.text
        again = client.post(f"/api/v1/approvals/{request['id']}/reject/", json={})
        assert again.status_code == 409
        execution = wait_for_status(client, started["id"])
    assert execution["status"] == "completed"
    assert node_statuses(execution)["report"] == "skipped"
    restart = next(job for job in execution["jobs"] if job["node_id"] == "restart")
    assert restart["stdout"].strip() == "restarting by admin"
    assert execution["approvals"][0]["decided_by"] == "admin"
    assert execution["approvals"][0]["note"] == "go"
