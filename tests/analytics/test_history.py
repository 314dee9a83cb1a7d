"""`manage.py generate_history` at small scale: shapes, counts and consistency of the rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Min
from django.utils import timezone

from executions.history import PREFIX
from executions.models import Execution, Job

pytestmark = pytest.mark.django_db


def test_generates_consistent_history(api):
    call_command(
        "generate_history",
        executions=600,
        jobs_per_execution=5,
        workflows=8,
        days=30,
        wide_jobs=20,
        batch=250,
    )
    assert Execution.objects.count() == 601
    per_execution = (
        Job.objects.values("execution_id").annotate(n=Count("id")).values_list("n", flat=True)
    )
    assert sorted(set(per_execution)) == [5, 20]
    assert Job.objects.count() == 600 * 5 + 20

    statuses = dict(Execution.objects.values_list("status").annotate(n=Count("id")))
    assert set(statuses) <= {"completed", "failed", "timed_out", "cancelled"}
    assert statuses["completed"] > 400 and statuses.get("failed", 0) > 10

    span = Execution.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    now = timezone.now()
    assert span["first"] >= now - timedelta(days=30, minutes=5) and span["last"] <= now
    assert span["last"] - span["first"] > timedelta(days=20)

    # Jobs agree with their execution: completed runs end with completed jobs, failed runs
    # have a failed (or timed-out) last attempt, every job ran on an agent of its pool.
    for execution in Execution.objects.filter(status="failed").prefetch_related("jobs")[:20]:
        failing = [node for node, state in execution.nodes.items() if state["status"] == "failed"]
        assert len(failing) == 1
        attempts = [job for job in execution.jobs.all() if job.node_id == failing[0]]
        assert max(attempts, key=lambda job: job.attempt).status == "failed"
    assert not Job.objects.filter(agent__isnull=True).exists()
    assert (
        not Job.objects.exclude(agent__pools__contains=[])
        .exclude(pool__in=[f"{PREFIX}-pool-{p}" for p in range(4)])
        .exists()
    )

    summary = api.get("/api/v1/analytics/summary/").json()
    assert summary["total_executions"] == 601
    assert summary["duration_ms"]["p95"] > summary["duration_ms"]["p50"] > 0
    assert {row["pool"] for row in summary["pool_utilisation"]} <= {
        f"{PREFIX}-pool-{p}" for p in range(4)
    }
    flaky = api.get("/api/v1/analytics/flaky/").json()["nodes"]
    assert sum(node["flaky_runs"] for node in flaky) > 0


def test_rejects_nonsense(db):
    with pytest.raises(CommandError, match="--executions"):
        call_command("generate_history", executions=0)
