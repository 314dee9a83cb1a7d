"""Hand-built API representations of jobs, events and list rows equal DRF's generic ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from agents.models import Agent
from executions.models import Execution, ExecutionEvent, Job
from executions.serializers import EventSerializer, ExecutionSerializer, JobSerializer
from executions.views import LiteJobSerializer
from tests.ops import factories

pytestmark = pytest.mark.django_db


def every_field_set() -> Job:
    run = factories.execution(factories.workflow(), with_children=False)
    agent = Agent.objects.create(name="rep-agent", token_digest="x" * 64, token_prefix="syk_x")
    at = datetime(2026, 3, 29, 0, 59, 58, 123456, tzinfo=UTC)
    Job.objects.create(
        execution=run,
        node_id="build",
        action="shell",
        attempt=2,
        status="failed",
        pool="linux",
        queue="pool.linux",
        agent=agent,
        params={"command": "make", "nested": [1, {"a": None}]},
        labels={"team": "infra"},
        timeout_s=2.5,
        exit_code=-9,
        stdout="out ✓\n",
        stderr="err\n",
        outputs={"artifact": "a.tgz"},
        http={"status": 502},
        error="exit code 2",
        error_kind="exit",
        assertions=[{"expr": "x", "ok": False}],
        wait_reason="queued",
        duration_ms=1234,
        not_before=at,
        kill_requested_at=at + timedelta(seconds=1),
        queued_at=at - timedelta(seconds=5),
        dispatched_at=at - timedelta(seconds=4),
        started_at=at - timedelta(microseconds=1),
        finished_at=at + timedelta(hours=3),
    )
    return Job.objects.select_related("agent").get(execution=run)


def nothing_optional_set() -> Job:
    run = factories.execution(factories.workflow(), with_children=False)
    Job.objects.create(execution=run, node_id="a", action="shell", queue="pool.default")
    return Job.objects.select_related("agent").get(execution=run)


def generic(serializer_class, job: Job) -> dict:
    return serializers.ModelSerializer.to_representation(serializer_class(), job)


@pytest.mark.parametrize("serializer_class", [JobSerializer, LiteJobSerializer])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_hand_built_job_representation_equals_drfs(serializer_class, zone):
    full, bare = every_field_set(), nothing_optional_set()
    with timezone.override(zone):
        full_data = serializer_class(full).data
        bare_data = serializer_class(bare).data
        assert full_data == generic(serializer_class, full)
        assert bare_data == generic(serializer_class, bare)
        many = serializer_class([full, bare], many=True).data
        assert many == [full_data, bare_data]
    assert list(full_data) == serializer_class.Meta.fields
    unset = [name for name, value in full_data.items() if value is None]
    assert unset == [], f"set these in every_field_set() so the comparison covers them: {unset}"
    assert full_data["agent"] == "rep-agent" and bare_data["agent"] is None
    assert isinstance(full_data["queued_at"], str)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_hand_built_event_representation_equals_drfs(zone):
    job = every_field_set()
    at = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    with_job = ExecutionEvent.objects.create(
        execution=job.execution,
        timestamp=at,
        level="error",
        kind="job.failed",
        node_id="build",
        job=job,
        message="exit code 2 ✗",
        data={"exit_code": 2, "tail": ["a", None]},
    )
    bare = ExecutionEvent.objects.create(
        execution=job.execution, timestamp=at, kind="run.started", message="started"
    )
    events = list(ExecutionEvent.objects.filter(pk__in=[with_job.pk, bare.pk]).order_by("id"))
    with timezone.override(zone):
        for event in events:
            assert EventSerializer(event).data == generic(EventSerializer, event)
        assert EventSerializer(events, many=True).data == [
            generic(EventSerializer, event) for event in events
        ]
    assert EventSerializer(events[0]).data["job"] == job.pk


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_hand_built_list_row_equals_drfs(zone):
    workflow = factories.workflow()
    parent = factories.execution(workflow)
    running = factories.execution(workflow, "running", with_children=False)
    rerun = factories.execution(workflow, "failed", with_children=False)
    Execution.objects.filter(pk=rerun.pk).update(
        rerun_of=parent,
        parent=parent,
        error="boom",
        labels={"team": "infra"},
        trigger={"kind": "webhook", "delivery": "d1"},
    )
    rows = list(
        Execution.objects.select_related("workflow", "version").filter(
            pk__in=[parent.pk, running.pk, rerun.pk]
        )
    )
    context = {"job_counts": {parent.pk: (5, 3), rerun.pk: (1, 1)}}
    with timezone.override(zone):
        hand_built = ExecutionSerializer(rows, many=True, context=context).data
        drf = [
            serializers.ModelSerializer.to_representation(ExecutionSerializer(context=context), row)
            for row in rows
        ]
    assert hand_built == drf
    by_id = {row["id"]: row for row in hand_built}
    assert by_id[str(rerun.pk)]["rerun_of"] == parent.pk
    assert by_id[str(parent.pk)]["jobs_total"] == 5
    assert by_id[str(running.pk)]["finished_at"] is None
