"""Per-workflow retention: a top-level `keep: {days, count}` in the published version replaces the
global policy for that workflow's runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals.models import ApprovalAudit, ApprovalLink
from executions.models import Execution
from orchestrator.engine import load_definition
from orchestrator.models import Workflow
from orchestrator.retention import purge_finished_executions, retention_rules, workflow_keeps
from orchestrator.services import publish_version, save_version
from orchestrator.trigger_models import CronFire, Trigger, WebhookDelivery
from tests.engine.test_definition import assert_issue
from tests.ops import factories

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
NODES = [{"id": "a", "action": "shell", "with": {"command": "true"}}]


def workflow(keep: dict | None = None) -> Workflow:
    wf = factories.workflow()
    if keep is None:
        return wf
    definition = {**wf.published_version.definition, "keep": keep}
    version = save_version(wf, load_definition(definition), "")
    publish_version(wf, version.number)
    wf.refresh_from_db()
    return wf


def runs(wf: Workflow, ages_in_days: list[int], **kwargs) -> list[Execution]:
    return [factories.execution(wf, age=n * DAY, **kwargs) for n in ages_in_days]


def left(*groups: list[Execution]) -> list[list[bool]]:
    """For each group, which of its runs still exist."""
    existing = set(Execution.objects.values_list("pk", flat=True))
    return [[run.pk in existing for run in group] for group in groups]


def with_trigger_rows(run: Execution) -> dict:
    """Approval links and audit, a webhook delivery and a cron fire that point at `run`."""
    request = run.approvals.get()
    ApprovalLink.objects.create(
        request=request, via="email", nonce=f"n-{run.pk}", expires_at=timezone.now() + DAY
    )
    ApprovalAudit.objects.create(request=request, action="requested")
    position = 100 + 2 * Trigger.objects.filter(workflow=run.workflow).count()
    hook = Trigger.objects.create(
        workflow=run.workflow, position=position, kind="webhook", key=f"k-{run.pk}"
    )
    cron = Trigger.objects.create(
        workflow=run.workflow, position=position + 1, kind="cron", config={"cron": "0 3 * * *"}
    )
    return {
        "request": request.pk,
        "delivery": WebhookDelivery.objects.create(trigger=hook, execution=run).pk,
        "fire": CronFire.objects.create(
            trigger=cron, scheduled_at=run.created_at, execution=run
        ).pk,
    }


class TestDefinition:
    def test_keep_is_parsed_with_missing_keys_as_zero(self):
        spec = load_definition({"slug": "wf", "nodes": NODES, "keep": {"count": 5}})
        assert spec.keep == {"days": 0, "count": 5}
        assert load_definition({"slug": "wf", "nodes": NODES}).keep is None

    @pytest.mark.parametrize(
        ("keep", "path", "fragment"),
        [
            ({"days": -1}, "keep.days", "whole number >= 0"),
            ({"count": "ten"}, "keep.count", "whole number >= 0"),
            ({"days": True}, "keep.days", "whole number >= 0"),
            ({"count": 1.5}, "keep.count", "whole number >= 0"),
            ({"weeks": 2}, "keep.weeks", "unknown key 'weeks'"),
            ({}, "keep", "set days and/or count"),
            ([30], "keep", "expected a mapping"),
        ],
    )
    def test_bad_keep_is_rejected_with_its_path(self, keep, path, fragment):
        assert_issue({"slug": "wf", "nodes": NODES, "keep": keep}, path, fragment)

    def test_the_api_answers_400_with_the_field_path(self, api):
        definition = {"slug": "wf-keep", "nodes": NODES, "keep": {"days": "forever"}}
        response = api.post("/api/v1/workflows/", {"definition": definition}, format="json")
        assert response.status_code == 400
        assert any(e["path"].endswith("keep.days") for e in response.json()["errors"])


def test_count_keep_overrides_the_global_policy_per_workflow():
    """Global: 30 days. `ten` keeps its 2 newest whatever their age; `forever` keeps all;
    `plain` follows the global policy."""
    ten, forever, plain = workflow({"count": 2}), workflow({"days": 0, "count": 0}), workflow()
    ten_runs = runs(ten, [1, 2, 3, 4], with_children=False)
    forever_runs = runs(forever, [100, 200], with_children=False)
    plain_runs = runs(plain, [1, 40, 50], with_children=False)

    assert purge_finished_executions(days=30, count=0, dry_run=True) == 4
    assert purge_finished_executions(days=30, count=0, batch=1) == 4

    assert left(ten_runs, forever_runs, plain_runs) == [
        [True, True, False, False],
        [True, True],
        [True, False, False],
    ]


def test_days_keep_purges_per_workflow_even_without_a_global_policy():
    short, long_ = workflow({"days": 7}), workflow({"days": 90})
    short_runs = runs(short, [1, 6, 8, 30], with_children=False)
    long_runs = runs(long_, [8, 30, 89, 91], with_children=False)
    other = runs(workflow(), [1000], with_children=False)

    assert purge_finished_executions(days=0, count=0, batch=2) == 3

    assert left(short_runs, long_runs, other) == [
        [True, True, False, False],
        [True, True, True, False],
        [True],
    ]


def test_only_the_published_version_keep_counts():
    wf = workflow({"count": 1})
    old = runs(wf, [5, 6], with_children=False)
    # A newer draft with another `keep:` changes nothing until it is published.
    save_version(wf, load_definition({**wf.published_version.definition, "keep": {"count": 5}}), "")
    assert workflow_keeps()[wf.pk] == (0, 1)
    assert purge_finished_executions(days=0, count=0, dry_run=True) == 1
    publish_version(wf)
    assert workflow_keeps()[wf.pk] == (0, 5)
    assert purge_finished_executions(days=0, count=0) == 0
    assert left(old) == [[True, True]]


def test_purged_runs_are_gone_from_every_table():
    wf = workflow({"count": 1})
    newest, oldest = runs(wf, [1, 2])
    jobs = {run.pk: list(run.jobs.values_list("pk", flat=True)) for run in (newest, oldest)}
    linked = {run.pk: with_trigger_rows(run) for run in (newest, oldest)}
    running = factories.execution(wf, "running", age=10 * DAY)

    assert purge_finished_executions(days=0, count=0) == 1

    assert factories.remaining(oldest, jobs[oldest.pk]) == {
        "Execution": 0,
        "Job": 0,
        "JobOutputChunk": 0,
        "ExecutionEvent": 0,
        "ApprovalRequest": 0,
        "SecretUsage": 0,
    }
    gone = linked[oldest.pk]
    assert not ApprovalLink.objects.filter(request_id=gone["request"]).exists()
    assert not ApprovalAudit.objects.filter(request_id=gone["request"]).exists()
    # Trigger history stays, without the deleted run.
    assert WebhookDelivery.objects.get(pk=gone["delivery"]).execution_id is None
    assert CronFire.objects.get(pk=gone["fire"]).execution_id is None
    assert not Execution.objects.filter(
        Q(pk=oldest.pk) | Q(rerun_of_id=oldest.pk) | Q(parent_id=oldest.pk)
    ).exists()
    kept = linked[newest.pk]
    assert factories.remaining(newest, jobs[newest.pk])["Job"] == 1
    assert ApprovalLink.objects.filter(request_id=kept["request"]).exists()
    assert WebhookDelivery.objects.get(pk=kept["delivery"]).execution_id == newest.pk
    assert Execution.objects.filter(pk=running.pk).exists()


def test_one_rule_per_distinct_keep_so_queries_do_not_grow_with_workflows():
    for _ in range(6):
        workflow({"count": 1})
    workflow({"days": 3})
    rules = retention_rules(30, 0)
    assert [(rule.days, rule.count) for rule in rules] == [(30, 0), (0, 1), (3, 0)]
    with CaptureQueriesContext(connection) as few:
        purge_finished_executions(days=30, count=0)
    for _ in range(6):
        workflow({"count": 1})
    with CaptureQueriesContext(connection) as more:
        purge_finished_executions(days=30, count=0)
    assert len(more.captured_queries) == len(few.captured_queries)
