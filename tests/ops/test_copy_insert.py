"""`insert_rows`: many rows through COPY on PostgreSQL, a few through one hand-built INSERT, the
same rows `bulk_create` would write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.safestring import SafeString

from executions.advancing import start_execution
from executions.models import Execution, ExecutionEvent, Job
from orchestrator.copy_insert import insert_rows
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

WORKFLOW = {"slug": "copy", "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}]}


def field_values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def events(execution, count: int) -> list[ExecutionEvent]:
    now = timezone.now()
    return [
        ExecutionEvent(
            execution_id=execution.pk,
            timestamp=now + timedelta(microseconds=n),
            kind="engine",
            node_id=f"c{n}",
            message=f"edge taken: root --success--> c{n} 'quoted' \\ tab\t",
            data={"to": f"c{n}", "nested": [None, True, 1.5, "é"]} if n % 2 else {},
        )
        for n in range(count)
    ]


def jobs(execution, count: int) -> list[Job]:
    return [
        Job(
            execution_id=execution.pk,
            node_id=f"c{n}",
            action="shell",
            queue="pool.default",
            params={"command": f"echo {n}", "env": {"A": "1"}},
            labels={"tier": "web"} if n % 2 else {},
            secrets=["token"] if n % 3 == 0 else [],
            http=None,
            timeout_s=1.5 if n % 2 else None,
            not_before=timezone.now() if n == 1 else None,
        )
        for n in range(count)
    ]


def test_many_rows_go_through_copy_and_read_back_as_written():
    execution = start_execution(create_workflow(WORKFLOW))
    made = events(execution, 40)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        created = insert_rows(ExecutionEvent, made)
    assert [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]] == []
    assert created == made
    ids = [event.pk for event in created]
    assert ids == sorted(ids) and len(set(ids)) == 40
    assert not any(event._state.adding for event in created)
    stored = {e.pk: e for e in ExecutionEvent.objects.filter(pk__in=ids)}
    for event in created:
        assert field_values(stored[event.pk]) == field_values(event)


def test_few_rows_go_in_one_insert_and_read_back_as_written():
    execution = start_execution(create_workflow(WORKFLOW))
    made = events(execution, 5)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        created = insert_rows(ExecutionEvent, made)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    ids = [event.pk for event in created]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert not any(event._state.adding for event in created)
    stored = {e.pk: e for e in ExecutionEvent.objects.filter(pk__in=ids)}
    for event in created:
        assert field_values(stored[event.pk]) == field_values(event)


@pytest.mark.parametrize("count", [4, 35])
def test_jobs_with_json_nulls_lists_and_times_read_back_as_written(count):
    execution = start_execution(create_workflow(WORKFLOW))
    made = jobs(execution, count)
    with transaction.atomic():
        insert_rows(Job, made)
    stored = {j.pk: j for j in Job.objects.filter(pk__in=[j.pk for j in made])}
    assert len(stored) == count
    for job in made:
        assert field_values(stored[job.pk]) == field_values(job)
    assert Job.objects.filter(pk=made[0].pk, http__isnull=True).exists()


@pytest.mark.parametrize("count", [2, 33])
def test_values_of_other_types_are_converted_as_bulk_create_would(count):
    execution = start_execution(create_workflow(WORKFLOW))
    made = jobs(execution, count)
    made[0].timeout_s = 2  # an int for a float column
    made[0].error = lazy(lambda: "translated later", str)()
    made[0].stdout = SafeString("<b>kept</b>")
    with transaction.atomic():
        insert_rows(Job, made)
    stored = Job.objects.get(pk=made[0].pk)
    assert (stored.timeout_s, stored.error, stored.stdout) == (
        2.0,
        "translated later",
        "<b>kept</b>",
    )


def test_few_rows_and_models_with_database_defaults_use_bulk_create():
    execution = start_execution(create_workflow(WORKFLOW))
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        few = insert_rows(ExecutionEvent, events(execution, 3))
    assert all(event.pk for event in few)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]

    runs = [
        Execution(workflow=execution.workflow, version=execution.version, inputs={})
        for _ in range(40)
    ]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        insert_rows(Execution, runs)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert Execution.objects.filter(pk__in=[r.pk for r in runs]).count() == 40


@pytest.mark.parametrize("count", [3, 40])
def test_a_failing_insert_raises_the_database_error_django_callers_catch_and_leaves_nothing(count):
    execution = start_execution(create_workflow(WORKFLOW))
    made = jobs(execution, count)
    made[-1].pk = made[0].pk
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(Job, made)
    assert not Job.objects.filter(pk__in=[j.pk for j in made]).exists()
