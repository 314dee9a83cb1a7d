"""Analytics summary, flaky nodes and failure diagnosis, on PostgreSQL with ORM-built rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from agents.models import Agent
from executions.models import Execution, Job
from executions.rollups import PRECISION
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
# Runs are placed hours after these, on the same UTC day whatever the time the tests run at.
DAY1 = NOW.astimezone(UTC).replace(hour=8, minute=0, second=0) - timedelta(days=2)
DAY2 = DAY1 + timedelta(days=1)


def workflow(slug: str):
    return create_workflow(
        f"""
slug: {slug}
nodes:
  - id: build
    action: shell
    with: {{command: "echo build"}}
  - id: deploy
    action: shell
    with: {{command: "echo deploy"}}
"""
    )


def agent(name: str) -> Agent:
    return Agent.objects.create(
        name=name, pools=["default"], token_digest=uuid.uuid4().hex * 2, token_prefix=name[:8]
    )


def run(wf, status: str, created: datetime, duration_s: float | None = 10, **fields) -> Execution:
    execution = Execution.objects.create(
        workflow=wf,
        version=fields.pop("version", wf.published_version),
        status=status,
        started_at=created if duration_s is not None else None,
        finished_at=created + timedelta(seconds=duration_s) if duration_s is not None else None,
        **fields,
    )
    Execution.objects.filter(pk=execution.pk).update(created_at=created)
    execution.refresh_from_db()
    return execution


def job(execution, node_id: str, attempt: int, status: str, agent=None, **fields) -> Job:
    return Job.objects.create(
        execution=execution,
        node_id=node_id,
        action="shell",
        attempt=attempt,
        status=status,
        pool=fields.pop("pool", "default"),
        queue="pool.default",
        agent=agent,
        finished_at=fields.pop("finished_at", execution.created_at + timedelta(seconds=attempt)),
        **fields,
    )


@pytest.fixture
def data():
    alpha, beta = workflow("alpha"), workflow("beta")
    a1, a2 = agent("agent-one"), agent("agent-two")
    runs = {
        "a_ok1": run(alpha, "completed", DAY1, 10),
        "a_ok2": run(alpha, "completed", DAY2, 20),
        "a_fail": run(alpha, "failed", DAY2 + timedelta(hours=1), 30),
        "a_cancel": run(alpha, "cancelled", DAY2 + timedelta(hours=2), 40),
        "a_running": run(alpha, "running", DAY2 + timedelta(hours=3), None),
        "b_ok": run(beta, "completed", DAY1, 100),
        "b_timeout": run(beta, "timed_out", DAY1 + timedelta(hours=1), 200),
        "old": run(alpha, "completed", NOW - timedelta(days=40), 5),
    }
    job(runs["a_ok1"], "build", 1, "completed", a1, duration_ms=1000)
    # Flaky: build failed on attempt 1, passed on attempt 2.
    job(runs["a_ok2"], "build", 1, "failed", a1, duration_ms=500, error_kind="exit_code")
    job(runs["a_ok2"], "build", 2, "completed", a2, duration_ms=700)
    # Failed for good: not flaky.
    job(runs["a_fail"], "build", 1, "failed", a2, duration_ms=300)
    job(runs["a_fail"], "build", 2, "failed", a2, duration_ms=300)
    job(runs["b_ok"], "build", 1, "completed", a1, pool="gpu", duration_ms=2000)
    return {"alpha": alpha, "beta": beta, "agents": (a1, a2), **runs}


def test_summary_totals_rates_and_percentiles(api, data):
    response = api.get("/api/v1/analytics/summary/")
    assert response.status_code == 200, response.content
    body = response.json()
    # The 40-day-old run is outside the default 30-day window.
    assert body["total_executions"] == 7
    assert body["completed"] == 3
    assert body["failed"] == 2  # failed + timed_out
    assert body["finished"] == 6
    assert body["success_rate"] == round(3 / 6, 4)
    assert body["active_workflows"] == 2
    # Durations (s): 10, 20, 30, 40, 100, 200 → avg 66.67, median 35, p95 175; percentiles
    # come from the duration histogram (exact within its bucket precision).
    assert body["duration_ms"] == {
        "avg": 66667,
        "p50": pytest.approx(35000, rel=PRECISION),
        "p95": pytest.approx(175000, rel=PRECISION),
    }


def test_summary_per_day_top_workflows_and_trend(api, data):
    body = api.get("/api/v1/analytics/summary").json()  # DESIGN's spelling, without the slash
    days = {row["day"]: row for row in body["per_day"]}
    day1 = DAY1.astimezone(UTC).date().isoformat()
    assert days[day1]["completed"] == 2 and days[day1]["failed"] == 1
    assert sum(row["other"] for row in body["per_day"]) == 2  # cancelled + running
    assert body["top_workflows"][0] == {
        "workflow": "alpha",
        "runs": 5,
        "completed": 2,
        "failed": 1,
        "success_rate": round(2 / 4, 4),
    }
    assert body["top_workflows"][1]["workflow"] == "beta"
    trend = [row for row in body["duration_trend"] if row["workflow"] == "beta"]
    assert trend == [
        {
            "workflow": "beta",
            "day": day1,
            "runs": 2,
            "p50_ms": pytest.approx(150000, rel=PRECISION),
            "p95_ms": pytest.approx(195000, rel=PRECISION),
        }
    ]


def test_summary_agent_and_pool_utilisation(api, data):
    body = api.get("/api/v1/analytics/summary/").json()
    agents = {row["agent"]: row for row in body["agent_utilisation"]}
    assert agents["agent-one"] == {"agent": "agent-one", "jobs": 3, "failed": 1, "busy_ms": 3500}
    assert agents["agent-two"] == {"agent": "agent-two", "jobs": 3, "failed": 2, "busy_ms": 1300}
    pools = {row["pool"]: row for row in body["pool_utilisation"]}
    assert pools["gpu"]["busy_ms"] == 2000 and pools["default"]["jobs"] == 5


def test_summary_filters_by_workflow_and_window(api, data):
    body = api.get("/api/v1/analytics/summary/", {"workflow": "beta"}).json()
    assert body["total_executions"] == 2 and body["workflows"] == ["beta"]
    assert [row["agent"] for row in body["agent_utilisation"]] == ["agent-one"]
    since = (NOW - timedelta(days=45)).isoformat()
    until = (NOW - timedelta(days=35)).isoformat()
    body = api.get("/api/v1/analytics/summary/", {"since": since, "until": until}).json()
    assert body["total_executions"] == 1 and body["success_rate"] == 1.0


def test_summary_empty_window(api, db):
    body = api.get("/api/v1/analytics/summary/").json()
    assert body["total_executions"] == 0
    assert body["success_rate"] is None
    assert body["duration_ms"] == {"avg": None, "p50": None, "p95": None}
    assert body["per_day"] == [] and body["top_workflows"] == []


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01"}, "until"),
        ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
    ],
)
def test_bad_window_is_a_400_with_field_paths(api, params, path):
    for url in ("/api/v1/analytics/summary/", "/api/v1/analytics/flaky/"):
        response = api.get(url, params)
        assert response.status_code == 400, response.content
        assert path in [error["path"] for error in response.json()["errors"]]


def test_analytics_require_authentication(client):
    assert client.get("/api/v1/analytics/summary/").status_code in (401, 403)
    assert client.get("/api/v1/analytics/flaky/").status_code in (401, 403)


def test_flaky_nodes_with_evidence(api, data):
    body = api.get("/api/v1/analytics/flaky/").json()
    assert body["nodes"] == [
        {
            "workflow": "alpha",
            "node": "build",
            "runs": 3,
            "flaky_runs": 1,
            # a_fail failed after a_ok2 passed on the same version with the same inputs.
            "alternating_runs": 1,
            "failed_runs": 1,
            "share": round(2 / 3, 4),
            "evidence": [str(data["a_fail"].pk), str(data["a_ok2"].pk)],
        }
    ]
    assert api.get("/api/v1/analytics/flaky/", {"workflow": "beta"}).json()["nodes"] == []


def test_flaky_evidence_is_capped_at_five_newest(api, data):
    executions = []
    for hour in range(7):
        execution = run(data["beta"], "completed", DAY2 + timedelta(hours=hour))
        job(execution, "deploy", 1, "timeout")
        job(execution, "deploy", 2, "completed")
        executions.append(execution)
    body = api.get("/api/v1/analytics/flaky", {"workflow": "beta"}).json()
    (node,) = body["nodes"]
    assert node["node"] == "deploy" and node["flaky_runs"] == 7 and node["share"] == 1.0
    assert node["evidence"] == [str(e.pk) for e in reversed(executions)][:5]


def test_alternation_counts_only_runs_on_the_same_version_and_inputs(api, db):
    """A crafted history of node `build` (version, inputs, outcome), oldest first:

    v1 {x:1}: pass, fail, pass, pass  -> 2 alternations (the fail, and the pass after it)
    v1 {x:2}: fail                    -> first of its group: not alternating
    v2 {x:1}: pass                    -> first of its group (new version): not alternating
    v2 {x:1}: pass                    -> same as before: not alternating
    """
    from orchestrator.services import add_version

    wf = workflow("gamma")
    v1 = wf.published_version
    v2 = add_version(wf, v1.definition | {"description": "v2"})
    history = [
        (v1, {"x": 1}, "completed"),
        (v1, {"x": 1}, "failed"),
        (v1, {"x": 1}, "completed"),
        (v1, {"x": 1}, "completed"),
        (v1, {"x": 2}, "failed"),
        (v2, {"x": 1}, "completed"),
        (v2, {"x": 1}, "completed"),
    ]
    runs = []
    for index, (version, inputs, status) in enumerate(history):
        execution = run(wf, status, DAY1 + timedelta(minutes=index), version=version, inputs=inputs)
        job(execution, "build", 1, status)
        runs.append(execution)
    body = api.get("/api/v1/analytics/flaky/", {"workflow": "gamma"}).json()
    (node,) = body["nodes"]
    assert (node["runs"], node["flaky_runs"], node["alternating_runs"], node["failed_runs"]) == (
        7,
        0,
        2,
        2,
    )
    assert node["share"] == round(2 / 7, 4)
    assert node["evidence"] == [str(runs[2].pk), str(runs[1].pk)]


def test_summary_query_count_does_not_grow_with_the_data(api, data):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/v1/analytics/summary/").status_code == 200
        return len(queries)

    count()  # the first request also records the token's use
    before = count()
    extra_agent = agent("agent-extra")
    for hour in range(5):
        execution = run(data["beta"], "completed", DAY2 + timedelta(hours=hour))
        job(execution, "build", 1, "completed", extra_agent, pool=f"pool-{hour}", duration_ms=10)
    assert count() == before


SQLITE_PROBE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
from orchestrator.authentication import create_api_token
user = get_user_model().objects.create_superuser("root", password="pw-root-123")
client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION="Token " + create_api_token(user))
for path in ("/api/v1/analytics/summary/", "/api/v1/analytics/flaky/"):
    response = client.get(path)
    print(path, response.status_code, response.json()["detail"])
from executions.rollups import fold_rollups
fold_rollups()  # the beat task runs in the quick start too
print("folded")
"""


def test_on_sqlite_the_analytics_say_they_need_postgresql(tmp_path):
    """`make run` uses SQLite; the analytics SQL is PostgreSQL's, so on a real SQLite database
    the API says so (501 in the error shape) instead of failing with a 500, and the beat task
    that folds rollups has nothing to do instead of failing every minute."""
    from tests.support import run_in_fresh_django

    output = run_in_fresh_django(
        SQLITE_PROBE, f"sqlite:///{tmp_path / 'switchyard.sqlite3'}", tmp_path
    )
    *lines, folded = output
    assert folded == "folded" and len(lines) == 2, output
    for line in lines:
        _path, code, detail = line.split(" ", 2)
        assert code == "501" and "PostgreSQL" in detail, line


def test_the_trend_covers_exactly_the_top_workflows_even_at_a_tie(api):
    """The trend rows are cut to the top workflows in SQL; its ranking (runs, then slug in
    code-point order, where a hyphen sorts before letters) must be the one the top list uses."""
    from executions.analytics import TOP_WORKFLOWS

    runs_of = {f"w{i:02d}": 3 for i in range(TOP_WORKFLOWS - 2)}
    runs_of |= {"tie-z": 2, "tieb": 2, "tiea": 2, "tie-a": 2}
    for slug, count in runs_of.items():
        wf = workflow(slug)
        for n in range(count):
            run(wf, "completed", DAY1 + timedelta(minutes=n), duration_s=5 + n)

    body = api.get("/api/v1/analytics/summary/").json()

    top = [row["workflow"] for row in body["top_workflows"]]
    assert top == [*sorted(s for s in runs_of if s.startswith("w")), "tie-a", "tie-z"]
    assert {row["workflow"] for row in body["duration_trend"]} == set(top)
