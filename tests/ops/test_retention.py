"""Retention: old finished runs vanish from every table; running and recent ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from executions.models import Execution
from orchestrator.celery_app import app
from orchestrator.retention import purge, purge_finished_executions, purgeable
from tests.ops import factories

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
ALL_GONE = {
    "Execution": 0,
    "Job": 0,
    "JobOutputChunk": 0,
    "ExecutionEvent": 0,
    "ApprovalRequest": 0,
    "SecretUsage": 0,
}
ALL_THERE = {
    "Execution": 1,
    "Job": 1,
    "JobOutputChunk": 1,
    "ExecutionEvent": 1,
    "ApprovalRequest": 1,
    "SecretUsage": 1,
}


def jobs_of(run: Execution) -> list:
    return list(run.jobs.values_list("pk", flat=True))


def test_days_purges_old_finished_runs_from_every_table():
    wf = factories.workflow()
    old = [factories.execution(wf, status, age=40 * DAY) for status in ("completed", "failed")]
    old.append(factories.execution(wf, "timed_out", age=31 * DAY))
    recent = factories.execution(wf, "completed", age=2 * DAY)
    old_but_running = factories.execution(wf, "running", age=90 * DAY)
    old_but_paused = factories.execution(wf, "paused", age=90 * DAY)
    jobs = {run.pk: jobs_of(run) for run in [*old, recent, old_but_running, old_but_paused]}

    assert purge_finished_executions(days=30, count=0, dry_run=True) == 3
    assert all(factories.remaining(run, jobs[run.pk]) == ALL_THERE for run in old)

    assert purge_finished_executions(days=30, count=0, batch=2) == 3

    for run in old:
        assert factories.remaining(run, jobs[run.pk]) == ALL_GONE
    for run in (recent, old_but_running, old_but_paused):
        assert factories.remaining(run, jobs[run.pk]) == ALL_THERE
    assert purge_finished_executions(days=30, count=0) == 0


def test_count_keeps_the_newest_finished_runs_of_each_workflow():
    busy, quiet = factories.workflow(), factories.workflow()
    busy_runs = [factories.execution(busy, age=n * DAY, with_children=False) for n in range(5)]
    running = factories.execution(busy, "running", age=10 * DAY, with_children=False)
    quiet_runs = [factories.execution(quiet, age=(n + 50) * DAY) for n in range(2)]

    assert purge_finished_executions(days=0, count=2, batch=1) == 3

    left = set(Execution.objects.values_list("pk", flat=True))
    assert {r.pk for r in busy_runs[:2]} <= left  # the two newest of `busy`
    assert not {r.pk for r in busy_runs[2:]} & left
    assert running.pk in left
    assert {r.pk for r in quiet_runs} <= left  # `quiet` has only two: all kept


def test_days_and_count_together_keep_the_newest_even_when_old():
    wf = factories.workflow()
    runs = [factories.execution(wf, age=(100 + n) * DAY, with_children=False) for n in range(4)]
    fresh = factories.execution(wf, age=DAY, with_children=False)

    # The newest three finished runs are kept whatever their age; `fresh` is one of them.
    assert purge_finished_executions(days=30, count=3) == 2

    left = set(Execution.objects.values_list("pk", flat=True))
    assert left >= {fresh.pk, runs[0].pk, runs[1].pk}
    assert not {runs[2].pk, runs[3].pk} & left


def test_no_policy_purges_nothing():
    wf = factories.workflow()
    factories.execution(wf, age=1000 * DAY, with_children=False)
    assert purgeable(0, 0).count() == 0
    assert purge_finished_executions(days=0, count=0) == 0
    assert Execution.objects.count() == 1


def test_management_command_dry_run_and_defaults():
    wf = factories.workflow()
    old = factories.execution(wf, age=40 * DAY)
    keep = factories.execution(wf, age=DAY)
    out = StringIO()
    call_command("purge_executions", "--days", "30", "--dry-run", stdout=out)
    assert "would purge 1 " in out.getvalue()
    assert Execution.objects.filter(pk=old.pk).exists()

    with override_settings(SWITCHYARD_RETENTION_DAYS=30, SWITCHYARD_RETENTION_COUNT=0):
        out = StringIO()
        call_command("purge_executions", stdout=out)
    assert "purged 1 " in out.getvalue()
    assert list(Execution.objects.values_list("pk", flat=True)) == [keep.pk]

    out = StringIO()
    call_command("purge_executions", stdout=out)  # settings default: no policy
    assert "nothing to purge" in out.getvalue()


def test_celery_task_uses_the_configured_policy():
    assert app.tasks["orchestrator.retention.purge"].name == purge.name
    wf = factories.workflow()
    old = factories.execution(wf, age=10 * DAY)
    now = timezone.now()
    assert old.finished_at < now - 9 * DAY
    with override_settings(SWITCHYARD_RETENTION_DAYS=7, SWITCHYARD_RETENTION_COUNT=0):
        purge.delay()  # eager in the in-process suites
    assert not Execution.objects.filter(pk=old.pk).exists()
