"""`POST /api/agent/v1/reports`: several final reports in one request, one advance per run."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent
from executions.models import Execution, ExecutionEvent, Job
from orchestrator.services import create_workflow
from tests.api.test_agent_protocol import agent_client, agent_token  # noqa: F401

pytestmark = pytest.mark.django_db


def fanout(width: int) -> dict:
    shell = {"action": "shell", "with": {"command": "true"}}
    children = [f"c{i}" for i in range(width)]
    return {
        "slug": f"fan{width}",
        "nodes": [
            {"id": "root", **shell, "on": {"success": children}},
            *[{"id": c, **shell, "on": {"success": "gather"}} for c in children],
            {"id": "gather", "type": "join", "on": {"success": "after"}},
            {"id": "after", **shell},
        ],
    }


def entry(job_id, lease, **fields) -> dict:
    return {
        "job_id": str(job_id),
        "lease": str(lease),
        "status": "completed",
        "exit_code": 0,
        "stdout": "ok\n",
        "accept_next": True,
    } | fields


def report(client, *entries):
    return client.post("/api/agent/v1/reports", {"reports": list(entries)}, format="json")


def running_children(api, token: str, width: int) -> tuple[Execution, APIClient, list[dict]]:
    """Start a fan-out of `width`, report its root through the batch endpoint (which hands one
    child over) and claim the other children: returns the run, the agent's client and the
    claimed children's specs."""
    create_workflow(fanout(width))
    run = api.post(f"/api/v1/workflows/fan{width}/execute/", {}, format="json").json()
    execution = Execution.objects.get(pk=run["id"])
    client = agent_client(token)
    root = Job.objects.get(execution=execution, node_id="root")
    spec = client.post(f"/api/agent/v1/jobs/{root.pk}/claim").json()
    specs = [report(client, entry(root.pk, spec["lease"])).json()["results"][0]["next"]]
    for job in Job.objects.filter(execution=execution, status="pending"):
        specs.append(client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json())
    return execution, client, specs


def test_reports_of_one_run_settle_together_and_hand_over_what_they_made_ready(
    api,
    agent_token,  # noqa: F811
):
    execution, client, children = running_children(api, agent_token, 3)
    assert sorted(spec["node_id"] for spec in children) == ["c0", "c1", "c2"]

    body = report(client, *[entry(s["job_id"], s["lease"]) for s in children]).json()

    results = body["results"]
    assert [r["job_id"] for r in results] == [s["job_id"] for s in children]
    assert all(r["applied"] and r["status"] == "completed" for r in results)
    handed = [r["next"] for r in results if r["next"]]
    assert [spec["node_id"] for spec in handed] == ["after"], "the join made one job ready"
    after = Job.objects.get(execution=execution, node_id="after")
    assert after.status == "running" and str(after.lease) == handed[0]["lease"]
    execution.refresh_from_db()
    assert execution.nodes["gather"]["status"] == "completed"
    assert execution.nodes["after"]["status"] == "running"
    kinds = ExecutionEvent.objects.filter(execution=execution, job_id=after.pk)
    assert "job.claimed" in set(kinds.values_list("kind", flat=True))


def test_a_repeated_batch_changes_nothing_and_returns_the_same_next_jobs(
    api,
    agent_token,  # noqa: F811
):
    execution, client, children = running_children(api, agent_token, 2)
    entries = [entry(s["job_id"], s["lease"]) for s in children]
    first = report(client, *entries).json()["results"]
    events = ExecutionEvent.objects.filter(execution=execution).count()

    again = report(client, *entries).json()["results"]

    assert [r["applied"] for r in again] == [False, False]
    assert [r["next"] for r in again] == [r["next"] for r in first]
    assert ExecutionEvent.objects.filter(execution=execution).count() == events
    assert Job.objects.filter(execution=execution, node_id="after").count() == 1


def test_each_report_fails_alone_unknown_jobs_404_stale_leases_409(
    api,
    agent_token,  # noqa: F811
):
    _execution, client, (good, stale) = running_children(api, agent_token, 2)
    unknown = uuid.uuid4()

    results = report(
        client,
        entry(good["job_id"], good["lease"], accept_next=False),
        entry(stale["job_id"], uuid.uuid4()),
        entry(unknown, uuid.uuid4()),
    ).json()["results"]

    assert results[0]["applied"] is True and results[0]["next"] is None
    assert results[1] == {
        "job_id": stale["job_id"],
        "error": {"status": 409, "detail": "lease is stale or superseded"},
    }
    assert results[2] == {
        "job_id": str(unknown),
        "error": {"status": 404, "detail": "No such job."},
    }
    assert Job.objects.get(pk=stale["job_id"]).status == "running"
    assert Job.objects.get(pk=good["job_id"]).status == "completed"


def test_every_field_of_every_report_lands_on_its_own_job(api, agent_token):  # noqa: F811
    _execution, client, children = running_children(api, agent_token, 3)
    sent = {
        spec["job_id"]: {
            "status": "failed" if n == 1 else "completed",
            "exit_code": n,
            "stdout": f"out {n}\n",
            "stderr": f"err {n}",
            "outputs": {"n": str(n), "nested": {"k": [n]}},
            "http": {"status": 200 + n} if n == 2 else None,
            "duration_ms": 10 * n,
            "error": "exit code 1" if n == 1 else "",
            "finished_at": f"2026-11-21T10:00:0{n}+00:00",
        }
        for n, spec in enumerate(children)
    }
    entries = [entry(s["job_id"], s["lease"], **sent[s["job_id"]]) for s in children]
    assert all(r["applied"] for r in report(client, *entries).json()["results"])
    for job_id, fields in sent.items():
        job = Job.objects.get(pk=job_id)
        assert job.status == fields["status"] and job.exit_code == fields["exit_code"]
        assert (job.stdout, job.stderr) == (fields["stdout"], fields["stderr"])
        assert job.outputs == fields["outputs"] and job.http == fields["http"]
        assert job.duration_ms == fields["duration_ms"] and job.error == fields["error"]
        assert job.finished_at.isoformat() == fields["finished_at"]
        assert job.error_kind == ("exit_code" if fields["status"] == "failed" else "")


def test_free_slots_pull_distinct_due_jobs_of_other_runs(api, agent_token):  # noqa: F811
    create_workflow(fanout(1))
    runs = [api.post("/api/v1/workflows/fan1/execute/", {}, format="json").json() for _ in "abcd"]
    client = agent_client(agent_token)
    roots = [Job.objects.get(execution_id=run["id"], node_id="root") for run in runs]
    specs = [client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json() for job in roots[:2]]

    results = report(
        client, *[entry(s["job_id"], s["lease"], status="failed", exit_code=1) for s in specs]
    ).json()["results"]

    pulled = [r["next"] for r in results]
    assert sorted(p["job_id"] for p in pulled) == sorted(str(job.pk) for job in roots[2:])
    assert len({p["lease"] for p in pulled}) == 2
    for spec in pulled:
        job = Job.objects.get(pk=spec["job_id"])
        assert job.status == "running" and str(job.lease) == spec["lease"]
    again = report(
        client, *[entry(s["job_id"], s["lease"], status="failed", exit_code=1) for s in specs]
    ).json()["results"]
    assert [r["next"]["job_id"] for r in again] == [p["job_id"] for p in pulled]


def test_a_batch_costs_the_same_queries_whatever_its_size(api, agent_token):  # noqa: F811
    """One run's reports are applied with one lock, one job update, one advance: the query
    count of a batch does not grow with the number of reports in it."""
    counts = {}
    for width in (2, 8):
        _execution, client, children = running_children(api, agent_token, width)
        entries = [entry(s["job_id"], s["lease"], accept_next=False) for s in children]
        with CaptureQueriesContext(connection) as queries:
            results = report(client, *entries).json()["results"]
        assert all(r["applied"] for r in results)
        counts[width] = len(queries.captured_queries)
    assert counts[8] == counts[2], counts


CHAIN = {
    "slug": "chain3",
    "nodes": [
        {"id": "a", "action": "shell", "with": {"command": "true"}, "on": {"success": "b"}},
        {"id": "b", "action": "shell", "with": {"command": "true"}, "on": {"success": "c"}},
        {"id": "c", "action": "shell", "with": {"command": "true"}},
    ],
}


def test_reports_of_several_runs_share_one_transaction_and_one_lock(api, agent_token):  # noqa: F811
    """A batch spanning runs locks them all in one statement, commits once, and writes their
    results, advanced states, new jobs and events in one statement each: its query count does
    not grow with the number of runs in it."""
    create_workflow(CHAIN)
    client = agent_client(agent_token)
    Agent.objects.update(last_heartbeat=timezone.now())  # online: its pool is not looked up
    counts = {}
    for width in (2, 6):
        runs = [
            api.post("/api/v1/workflows/chain3/execute/", {}, format="json").json()["id"]
            for _ in range(width)
        ]
        first = [Job.objects.get(execution_id=run, node_id="a") for run in runs]
        specs = [client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json() for job in first]
        entries = [entry(s["job_id"], s["lease"], accept_next=False) for s in specs]
        with CaptureQueriesContext(connection) as queries:
            results = report(client, *entries).json()["results"]
        assert all(r["applied"] for r in results)
        statements = [q["sql"] for q in queries.captured_queries]
        assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 1, "one transaction"
        locks = [sql for sql in statements if 'FROM "executions_execution" e ' in sql]
        assert len(locks) == 1 and "FOR NO KEY UPDATE" in locks[0], "one lock statement"
        counts[width] = len(statements)
        for run in runs:
            assert Execution.objects.get(pk=run).nodes["a"]["status"] == "completed"
            assert Job.objects.get(execution_id=run, node_id="b").status in (
                "pending",
                "dispatched",
            )
    assert counts[6] == counts[2], counts


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"reports": []}, "reports"),
        ({}, "reports"),
        (
            {"reports": [{"job_id": "x", "lease": str(uuid.uuid4()), "status": "completed"}]},
            "reports[0].job_id",
        ),
        (
            {
                "reports": [
                    entry(uuid.uuid4(), uuid.uuid4()),
                    entry(uuid.uuid4(), uuid.uuid4(), status="done"),
                ]
            },
            "reports[1].status",
        ),
        ({"reports": [entry(uuid.uuid4(), uuid.uuid4())] * 65}, "reports"),
    ],
)
def test_bad_batches_are_refused_whole_with_the_field_path(agent_token, body, path):  # noqa: F811
    response = agent_client(agent_token).post("/api/agent/v1/reports", body, format="json")
    assert response.status_code == 400
    assert path in [error["path"] for error in response.json()["errors"]], response.json()


def test_only_agents_may_report(api):
    response = api.post("/api/agent/v1/reports", {"reports": []}, format="json")
    assert response.status_code in (401, 403)


def repeated_batch_queries(api, token: str, reports: int) -> int:
    """Queries answering a repeated batch of `reports` reports whose first delivery each
    pulled a pending job for its slot."""
    create_workflow(fanout(2 * reports) | {"slug": f"fan{2 * reports}"})
    run = api.post(f"/api/v1/workflows/fan{2 * reports}/execute/", {}, format="json").json()
    client = agent_client(token)
    root = Job.objects.get(execution_id=run["id"], node_id="root")
    spec = client.post(f"/api/agent/v1/jobs/{root.pk}/claim").json()
    specs = [report(client, entry(root.pk, spec["lease"])).json()["results"][0]["next"]]
    for job in Job.objects.filter(execution_id=run["id"], status="pending")[: reports - 1]:
        specs.append(client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json())
    entries = [entry(s["job_id"], s["lease"]) for s in specs]
    first = report(client, *entries).json()["results"]
    assert all(r["applied"] and r["next"] for r in first)

    with CaptureQueriesContext(connection) as queries:
        again = report(client, *entries).json()["results"]

    assert [r["next"] for r in again] == [r["next"] for r in first]
    return len(queries)


def test_a_repeated_batch_finds_its_handed_over_jobs_in_one_query(api, agent_token):  # noqa: F811
    assert repeated_batch_queries(api, agent_token, 2) == repeated_batch_queries(
        api, agent_token, 5
    )


def pairs_at_their_last_step(api, token: str, runs: int, started: int) -> tuple[list, list]:
    """Start `started` runs of a two-step chain in one batch; the agent claims and reports the
    first step of the first `runs` of them, each report handing over its run's last job.
    Returns the runs' ids and the specs of the handed-over jobs."""
    shell = {"action": "shell", "with": {"command": "true"}}
    slug = f"pair{runs}-{started}"
    create_workflow(
        {
            "slug": slug,
            "nodes": [{"id": "a", **shell, "on": {"success": "b"}}, {"id": "b", **shell}],
        }
    )
    answer = api.post(
        f"/api/v1/workflows/{slug}/execute-batch/", {"runs": [{}] * started}, format="json"
    )
    ids = [run["id"] for run in answer.json()["results"]]
    client = agent_client(token)
    specs = [
        client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()
        for job in Job.objects.filter(execution_id__in=ids[:runs], node_id="a")
    ]
    results = report(client, *[entry(s["job_id"], s["lease"]) for s in specs]).json()["results"]
    last = [r["next"] for r in results]
    assert all(last), "each first report hands over its run's last job"
    return ids, last


def finishing_batch_queries(api, token: str, runs: int) -> int:
    """Queries of one batch reporting the last job of `runs` runs of a two-step chain."""
    ids, last = pairs_at_their_last_step(api, token, runs, runs)
    client = agent_client(token)

    with CaptureQueriesContext(connection) as queries:
        results = report(client, *[entry(s["job_id"], s["lease"]) for s in last]).json()["results"]

    assert all(r["applied"] for r in results)
    assert set(Execution.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "completed"
    }
    return len(queries)


def test_runs_finishing_in_one_batch_cost_no_statement_each(api, agent_token):  # noqa: F811
    assert finishing_batch_queries(api, agent_token, 2) == finishing_batch_queries(
        api, agent_token, 5
    )


def test_free_slots_pull_their_next_jobs_in_the_batchs_transaction(api, agent_token):  # noqa: F811
    """Runs that finish hand nothing over: their slots pull the oldest due jobs of other runs
    inside the batch's own transaction, and the claim events go in with the batch's events."""
    ids, last = pairs_at_their_last_step(api, agent_token, 3, 6)
    waiting = ids[3:]
    client = agent_client(agent_token)

    with CaptureQueriesContext(connection) as queries:
        results = report(client, *[entry(s["job_id"], s["lease"]) for s in last]).json()["results"]

    pulled = Job.objects.filter(pk__in=[r["next"]["job_id"] for r in results])
    assert {(str(job.execution_id), job.node_id, job.status) for job in pulled} == {
        (run, "a", "running") for run in waiting
    }
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 1, "one transaction"
    event_inserts = [s for s in statements if 'INTO "executions_executionevent"' in s]
    assert len(event_inserts) == 1, "claim events go in with the batch's"
    claims = ExecutionEvent.objects.filter(kind="job.claimed", job_id__in=pulled)
    assert sorted(str(e.execution_id) for e in claims) == sorted(waiting)
