"""POST /api/v1/executions/{id}/diagnose/: rule-based diagnosis of a failed execution."""

from __future__ import annotations

from datetime import timedelta

import pytest

from executions.models import Execution
from orchestrator.services import publish_version, save_version, validate_definition
from tests.analytics.test_analytics import DAY1, DAY2, agent, job, run, workflow

pytestmark = pytest.mark.django_db


def url(execution) -> str:
    return f"/api/v1/executions/{execution.pk}/diagnose/"


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        (
            {"error": "connection refused: 10.0.0.5:5432", "error_kind": "connection"},
            "connection_refused",
        ),
        ({"error": "DNS: no such host db.internal", "error_kind": "connection"}, "dns"),
        ({"error": "TLS: certificate verify failed", "error_kind": "connection"}, "tls"),
        ({"error": "authentication failed for user deploy", "error_kind": "auth"}, "auth"),
        ({"error": "agent lost (no heartbeat)", "error_kind": "agent_lost"}, "agent_lost"),
        (
            {"error": "HTTP 503", "error_kind": "http_status", "http": {"status": 503}},
            "http_status",
        ),
        (
            {
                "error": "exit code 2",
                "error_kind": "exit_code",
                "exit_code": 2,
                "stderr": "line\n" * 30 + "psql: could not resolve host db",
            },
            "dns",
        ),
        (
            {"error": "exit code 1", "error_kind": "exit_code", "exit_code": 1, "stderr": "boom"},
            "exit_code",
        ),
    ],
)
def test_cause_classification(api, fields, kind):
    wf = workflow("diag")
    execution = run(wf, "failed", DAY2, nodes={"build": {"status": "failed", "reason": "x"}})
    job(execution, "build", 1, fields.pop("status", "failed"), agent("a"), **fields)
    response = api.post(url(execution))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["failed_node"] == "build"
    assert body["cause"]["kind"] == kind
    assert body["suggestion"]
    assert len(body["cause"]["evidence"]["stderr_tail"].splitlines()) <= 20


def test_timeout_job(api):
    execution = run(workflow("diag"), "failed", DAY2, nodes={"build": {"status": "failed"}})
    job(execution, "build", 1, "timeout", error="timed out after 30s", error_kind="timeout")
    assert api.post(url(execution)).json()["cause"]["kind"] == "timeout"


def test_template_error_without_a_job(api):
    reason = "template error at with.command: 'inputs.missing' is undefined"
    execution = run(
        workflow("diag"),
        "failed",
        DAY2,
        nodes={"build": {"status": "completed"}, "deploy": {"status": "failed", "reason": reason}},
    )
    job(execution, "build", 1, "completed")
    body = api.post(url(execution)).json()
    assert body["failed_node"] == "deploy"
    assert body["cause"]["kind"] == "template_error"
    assert reason in body["cause"]["summary"]
    assert body["cause"]["evidence"]["node_reason"] == reason


def test_root_failure_is_the_earliest_failed_job(api):
    execution = run(
        workflow("diag"),
        "failed",
        DAY2,
        nodes={"build": {"status": "failed"}, "deploy": {"status": "failed"}},
    )
    job(execution, "deploy", 1, "cancelled", finished_at=DAY2 + timedelta(seconds=1))
    job(
        execution,
        "build",
        1,
        "failed",
        error="exit code 3",
        error_kind="exit_code",
        finished_at=DAY2 + timedelta(seconds=5),
    )
    assert api.post(url(execution)).json()["failed_node"] == "build"


def test_changes_since_last_success_and_history(api):
    wf = workflow("diag")
    one, two = agent("agent-one"), agent("agent-two")
    ok = run(
        wf,
        "completed",
        DAY1,
        10,
        inputs={"env": "prod", "tag": "v1", "old": 1},
        nodes={"build": {"status": "completed"}},
    )
    job(ok, "build", 1, "completed", one)
    earlier_failure = run(
        wf, "failed", DAY1 + timedelta(hours=1), nodes={"build": {"status": "failed"}}
    )
    spec = validate_definition(
        'slug: diag\nnodes:\n  - id: build\n    action: shell\n    with: {command: "false"}\n'
    )
    v2 = save_version(wf, spec, "", None)
    publish_version(wf, v2.number)
    failed = run(
        wf,
        "failed",
        DAY2,
        25,
        version=v2,
        inputs={"env": "prod", "tag": "v2", "new": True},
        nodes={"build": {"status": "failed", "reason": "exit code 1"}},
    )
    job(failed, "build", 1, "failed", two, error="exit code 1", error_kind="exit_code", exit_code=1)
    body = api.post(url(failed)).json()
    assert body["execution"] == str(failed.pk)
    changes = body["changes"]
    assert changes["last_success"] == str(ok.pk)
    assert changes["version"] == {"failed_run": 2, "last_success": 1, "changed": True}
    assert changes["inputs"] == {"added": ["new"], "removed": ["old"], "changed": ["tag"]}
    assert changes["agent"] == {
        "failed_run": "agent-two",
        "last_success": "agent-one",
        "changed": True,
    }
    assert changes["duration_ms"] == {"failed_run": 25000, "last_success": 10000}
    history = body["history"]
    assert history["runs"] == 3 and history["failures"] == 2
    assert history["share"] == round(2 / 3, 4)
    assert history["previous_failure"] == str(earlier_failure.pk)
    assert body["cause"]["evidence"]["exit_code"] == 1
    assert body["cause"]["evidence"]["agent"] == "agent-two"


def test_no_previous_success(api):
    execution = run(workflow("diag"), "failed", DAY2, nodes={"build": {"status": "failed"}})
    job(execution, "build", 1, "failed", error="exit code 1", error_kind="exit_code")
    changes = api.post(url(execution)).json()["changes"]
    assert changes["last_success"] is None and changes["inputs"] is None


def test_diagnose_is_deterministic_and_stores_nothing(api):
    execution = run(workflow("diag"), "failed", DAY2, nodes={"build": {"status": "failed"}})
    job(execution, "build", 1, "failed", error="exit code 1", error_kind="exit_code")
    before = Execution.objects.values().get(pk=execution.pk)
    first, second = api.post(url(execution)).json(), api.post(url(execution)).json()
    assert first == second
    assert Execution.objects.values().get(pk=execution.pk) == before


@pytest.mark.parametrize("status", ["completed", "running", "cancelled", "pending"])
def test_not_failed_is_a_409(api, status):
    execution = run(workflow("diag"), status, DAY2)
    response = api.post(url(execution))
    assert response.status_code == 409
    assert set(response.json()) >= {"detail"}


def test_unknown_execution_is_a_404(api, db):
    assert api.post("/api/v1/executions/not-a-uuid/diagnose/").status_code == 404
    assert (
        api.post("/api/v1/executions/00000000-0000-0000-0000-000000000000/diagnose/").status_code
        == 404
    )
