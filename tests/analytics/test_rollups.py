"""Rollup-backed analytics summary against the same figures computed from raw rows."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Q, Sum

from executions.analytics import Window, summary
from executions.models import (
    Execution,
    ExecutionRollup,
    ExecutionRollupDelta,
    Job,
    JobRollup,
    JobRollupDelta,
)
from executions.rollups import PRECISION, fold, histogram_percentile, rebuild
from tests.analytics.test_analytics import NOW, agent, job, run, workflow

pytestmark = pytest.mark.django_db

STATUSES = ["completed"] * 6 + ["failed", "timed_out", "cancelled", "running"]


@pytest.fixture
def history():
    """~120 runs over six days (both window edges cut days in two), with jobs on agents."""
    rng = random.Random(7)
    flows = [workflow("alpha"), workflow("beta"), workflow("gamma")]
    agents = [agent("agent-one"), agent("agent-two")]
    for _ in range(120):
        status = rng.choice(STATUSES)
        created = NOW - timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
        duration = None if status == "running" else rng.lognormvariate(3, 1)
        execution = run(rng.choice(flows), status, created, duration)
        for attempt in (1, 2):
            job_status = "running" if status == "running" else rng.choice(["completed", "failed"])
            job(
                execution,
                "build",
                attempt,
                job_status,
                rng.choice([*agents, None]),
                pool=rng.choice(["default", "gpu", ""]),
                duration_ms=None if job_status == "running" else rng.randrange(1, 5000),
            )
    return flows


def window(**overrides) -> Window:
    return Window.build(NOW - timedelta(days=4, hours=7), NOW, **overrides)


def raw_percentiles(window: Window) -> tuple[float | None, float | None]:
    sql = """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)
        FROM (SELECT EXTRACT(EPOCH FROM finished_at - started_at) * 1000 AS ms
              FROM executions_execution e JOIN orchestrator_workflow w ON w.id = e.workflow_id
              WHERE e.created_at >= %s AND e.created_at < %s
                AND (cardinality(%s::text[]) = 0 OR w.slug = ANY(%s))) AS d
    """
    slugs = list(window.workflows)
    with connection.cursor() as cursor:
        cursor.execute(sql, [window.since, window.until, slugs, slugs])
        return cursor.fetchone()


def raw_figures(window: Window) -> dict:
    """The summary's counts and utilisation computed straight from the raw rows."""
    executions = Execution.objects.filter(created_at__gte=window.since, created_at__lt=window.until)
    jobs = Job.objects.filter(
        execution__created_at__gte=window.since, execution__created_at__lt=window.until
    )
    if window.workflows:
        executions = executions.filter(workflow__slug__in=window.workflows)
        jobs = jobs.filter(execution__workflow__slug__in=window.workflows)
    per_workflow = {
        row["workflow__slug"]: row["runs"]
        for row in executions.values("workflow__slug").annotate(runs=Count("id"))
    }
    agents = {
        row["agent__name"]: (row["jobs"], row["failed"], row["busy"] or 0)
        for row in jobs.filter(agent__isnull=False)
        .values("agent__name")
        .annotate(
            jobs=Count("id"),
            failed=Count("id", filter=Q(status__in=["failed", "timeout"])),
            busy=Sum("duration_ms"),
        )
    }
    return {
        "total": executions.count(),
        "completed": executions.filter(status="completed").count(),
        "failed": executions.filter(status__in=["failed", "timed_out"]).count(),
        "per_workflow": per_workflow,
        "agents": agents,
        "percentiles": raw_percentiles(window),
    }


def figures(body: dict) -> dict:
    return {
        "total": body["total_executions"],
        "completed": body["completed"],
        "failed": body["failed"],
        "per_workflow": {row["workflow"]: row["runs"] for row in body["top_workflows"]},
        "agents": {
            row["agent"]: (row["jobs"], row["failed"], row["busy_ms"])
            for row in body["agent_utilisation"]
        },
        "percentiles": (body["duration_ms"]["p50"], body["duration_ms"]["p95"]),
    }


def assert_matches_raw(window: Window) -> None:
    expected, actual = raw_figures(window), figures(summary(window))
    p50, p95 = expected.pop("percentiles")
    got50, got95 = actual.pop("percentiles")
    assert actual == expected
    for got, exact in ((got50, p50), (got95, p95)):
        assert got == (None if exact is None else pytest.approx(exact, rel=PRECISION, abs=1))


def test_triggers_record_deltas_and_the_summary_matches_raw_rows(history):
    assert ExecutionRollupDelta.objects.exists() and JobRollupDelta.objects.exists()
    assert not ExecutionRollup.objects.exists()
    assert_matches_raw(window())
    assert_matches_raw(window(workflows=["beta"]))


def test_folded_rollups_give_the_same_figures_and_leave_no_delta(history):
    before = summary(window())
    fold()
    assert not ExecutionRollupDelta.objects.exists() and not JobRollupDelta.objects.exists()
    assert ExecutionRollup.objects.exists() and JobRollup.objects.exists()
    assert summary(window()) == before
    assert_matches_raw(window())
    assert_matches_raw(window(workflows=["alpha", "gamma"]))


def test_windows_shorter_than_a_day_and_hour_read_raw_rows(history):
    fold()
    assert_matches_raw(Window.build(NOW - timedelta(hours=20), NOW - timedelta(hours=3)))
    assert_matches_raw(Window.build(NOW - timedelta(minutes=50), NOW - timedelta(minutes=5)))


def test_finishing_a_run_counts_it_once_and_later_edits_move_it(history):
    fold()
    running = Execution.objects.filter(status="running", created_at__gte=window().since).first()
    running.status = "completed"
    running.finished_at = running.created_at + timedelta(seconds=3)
    running.started_at = running.created_at
    running.save()
    assert_matches_raw(window())
    running.finished_at = running.created_at + timedelta(seconds=300)
    running.save()  # terminal → terminal with another duration: -1 old, +1 new
    running.save()  # nothing changed: no delta
    assert_matches_raw(window())
    fold()
    assert_matches_raw(window())


def test_deleted_runs_are_gone_from_the_rollups(api, history):
    fold()
    finished = list(
        Execution.objects.filter(created_at__gte=window().since, status="completed")[:5]
    )
    for execution in finished[:2]:
        assert api.delete(f"/api/v1/executions/{execution.pk}/").status_code == 204
    Execution.objects.filter(pk__in=[e.pk for e in finished[2:]]).delete()  # retention's way
    assert_matches_raw(window())
    fold()
    assert_matches_raw(window())
    # Purging every run of a workflow leaves no rollup row of it behind.
    Execution.objects.filter(workflow=history[1]).exclude(status="running").delete()
    Execution.objects.filter(workflow=history[1]).delete()
    fold()
    assert_matches_raw(window())
    assert not ExecutionRollup.objects.filter(workflow_id=history[1].pk).exists()


def test_rebuild_equals_the_trigger_maintained_rollups(history):
    fold()
    maintained = sorted(
        ExecutionRollup.objects.values_list("day", "workflow_id", "status", "bucket", "runs")
    )
    jobs = sorted(JobRollup.objects.values_list("hour", "agent_id", "pool", "jobs", "busy_ms"))
    ExecutionRollup.objects.update(runs=0)
    JobRollup.objects.all().delete()
    call_command("rebuild_rollups", "--since", (NOW - timedelta(days=30)).date().isoformat())
    assert (
        sorted(
            ExecutionRollup.objects.values_list("day", "workflow_id", "status", "bucket", "runs")
        )
        == maintained
    )
    assert (
        sorted(JobRollup.objects.values_list("hour", "agent_id", "pool", "jobs", "busy_ms")) == jobs
    )


def test_rebuild_since_keeps_older_days_and_folds_pending_deltas(history):
    old = run(history[0], "completed", NOW - timedelta(days=20), 5)
    fold()
    ExecutionRollup.objects.filter(day=old.created_at.date()).update(runs=7)  # marker
    run(history[0], "failed", NOW - timedelta(hours=30), 5)  # pending delta
    rebuild(NOW - timedelta(days=10))
    assert not ExecutionRollupDelta.objects.exists()
    assert ExecutionRollup.objects.get(day=old.created_at.date()).runs == 7
    assert_matches_raw(window())


def test_rebuild_rollups_rejects_a_bad_since():
    with pytest.raises(CommandError, match="--since"):
        call_command("rebuild_rollups", "--since", "yesterday")


def test_histogram_percentiles_are_within_the_documented_precision():
    rng = random.Random(3)
    values = [rng.lognormvariate(8, 2) for _ in range(5000)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT switchyard_duration_bucket(v), COUNT(*) FROM unnest(%s::float8[]) AS v "
            "GROUP BY 1",
            [values],
        )
        histogram = dict(cursor.fetchall())
    ordered = sorted(values)
    for fraction in (0.5, 0.95, 0.99):
        exact = ordered[round(fraction * (len(ordered) - 1))]
        assert histogram_percentile(histogram, fraction) == pytest.approx(exact, rel=PRECISION)


def test_generate_history_fills_the_rollups_without_counting_twice(db):
    call_command(
        "generate_history", executions=300, jobs_per_execution=3, workflows=4, days=10, batch=100
    )
    assert not JobRollupDelta.objects.filter(jobs__gt=1).exists()
    fold()
    assert_matches_raw(Window.build(NOW - timedelta(days=8, hours=5), NOW))


def test_the_control_worker_folds_every_minute():
    from django.conf import settings

    from orchestrator.celery_app import app

    entry = settings.CELERY_BEAT_SCHEDULE["fold-rollups"]
    assert entry["schedule"] == 60.0
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
