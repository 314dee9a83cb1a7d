"""The hand-written queries of the report hot path (`executions.hot_path`, agent authentication):
they load exactly what the ORM would, take the row locks they promise, and work on SQLite."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from agents.services import authenticate_agent, register_agent, revoke_agent
from executions.advancing import start_execution
from executions.hot_path import (
    lock_execution,
    lock_executions_of_jobs,
    lock_jobs,
    save_execution_state,
)
from executions.models import Execution, Job
from orchestrator.services import create_workflow
from tests.support import run_in_fresh_django

CHAIN = {
    "slug": "hot",
    "inputs": {"who": {"type": "string", "default": "ops"}},
    "nodes": [
        {"id": "a", "action": "shell", "with": {"command": "echo hi"}, "on": {"success": "b"}},
        {"id": "b", "action": "shell", "with": {"command": "true"}},
    ],
}


def field_values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


@pytest.mark.django_db
def test_a_locked_run_is_the_run_the_orm_loads_with_its_workflow_and_version():
    execution = start_execution(create_workflow(CHAIN))
    job = Job.objects.get(execution=execution, node_id="a")
    expected = Execution.objects.select_related("workflow", "version").get(pk=execution.pk)

    with transaction.atomic():
        by_id = lock_execution(execution.pk)
        (by_job,) = lock_executions_of_jobs([job.pk, uuid.uuid4()]).values()
        with CaptureQueriesContext(connection) as queries:
            for locked in (by_id, by_job):
                assert field_values(locked) == field_values(expected)
                assert field_values(locked.workflow) == field_values(expected.workflow)
                assert locked.version.pk == expected.version.pk
                assert locked.version.created_at == expected.version.created_at
                assert isinstance(locked.nodes, dict) and locked.nodes["a"]["status"] == "running"
        assert queries.captured_queries == [], "workflow and version came with the row"
        assert "definition" in by_id.version.get_deferred_fields()
        assert by_id.version.definition == expected.version.definition  # loads lazily

        assert lock_executions_of_jobs([uuid.uuid4()]) == {}
        with pytest.raises(Execution.DoesNotExist):
            lock_execution(uuid.uuid4())
        jobs = lock_jobs({job.pk, uuid.uuid4()})
    assert list(jobs) == [job.pk]
    assert field_values(jobs[job.pk]) == field_values(Job.objects.get(pk=job.pk))


@pytest.mark.django_db
def test_the_state_advancing_writes_lands_and_nothing_else_changes():
    from datetime import timedelta

    from django.utils import timezone

    execution = start_execution(create_workflow(CHAIN))
    before = field_values(Execution.objects.get(pk=execution.pk))
    with transaction.atomic():
        locked = lock_execution(execution.pk)
        locked.nodes = {"a": {"status": "completed", "taken": ["success"]}, "b": {"x": [1, "é"]}}
        locked.status, locked.error = "failed", 'it\'s "broken"'
        locked.outputs = {"n": 1.5, "list": [None, True]}
        locked.finished_at = timezone.now()
        locked.next_timer_at = locked.finished_at + timedelta(seconds=30)
        locked.labels = {"not": "saved"}
        save_execution_state(locked)
    after = field_values(Execution.objects.get(pk=execution.pk))
    changed = {"nodes", "status", "error", "outputs", "finished_at", "next_timer_at"}
    assert {k: after[k] for k in changed} == {k: getattr(locked, k) for k in changed}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }


@pytest.mark.django_db
def test_agent_tokens_resolve_to_their_agent_until_revoked():
    agent, token = register_agent(enrollment_token=None, name="hot", pools=["p"], labels={"k": "v"})
    found = authenticate_agent(token)
    assert field_values(found) == field_values(Agent.objects.get(pk=agent.pk))
    assert found.queues == agent.queues
    assert authenticate_agent(token + "x") is None
    revoke_agent(agent)
    assert authenticate_agent(token) is None


def test_user_tokens_resolve_to_their_token_and_user_until_revoked(django_user_model):
    from orchestrator.authentication import create_api_token, live_token
    from orchestrator.models import ApiToken
    from orchestrator.tokens import hash_token

    user = django_user_model.objects.create_user("hot", password="pw-123456789")
    raw = create_api_token(user, "ci")
    expected = ApiToken.objects.select_related("user").get(digest=hash_token(raw))

    found = live_token(hash_token(raw))

    assert field_values(found) == field_values(expected)
    assert field_values(found.user) == field_values(expected.user)
    assert live_token(hash_token(raw + "x")) is None
    ApiToken.objects.filter(pk=expected.pk).update(revoked_at=expected.created_at)
    assert live_token(hash_token(raw)) is None


@pytest.mark.django_db(transaction=True)
def test_the_locks_are_really_taken():
    """While a transaction holds a run and a job, another connection cannot lock them."""
    execution = start_execution(create_workflow(CHAIN))
    job = Job.objects.get(execution=execution, node_id="a")
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    )
    try:
        with transaction.atomic():
            lock_executions_of_jobs([job.pk])
            lock_jobs([job.pk])
            for table, key in (("executions_execution", execution.pk), ("executions_job", job.pk)):
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    other.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [key])
        for table, key in (("executions_execution", execution.pk), ("executions_job", job.pk)):
            other.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [key])
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_pull_claims_the_oldest_due_unlocked_jobs_of_the_agents_queues_in_one_statement():
    """`pull_due_jobs`: oldest first, each with its lease in order; a job not yet due, one of
    another queue, one already claimed and one another transaction holds are left alone; the
    jobs come back as `claimed_jobs` loads them."""
    from datetime import timedelta

    from django.utils import timezone

    from executions.hot_path import claimed_jobs, pull_due_jobs
    from executions.jobs import job_spec

    workflow = create_workflow(CHAIN)
    runs = [start_execution(workflow) for _ in range(6)]
    jobs = [Job.objects.get(execution=run, node_id="a") for run in runs]
    base = timezone.now() - timedelta(minutes=1)
    for age, job in enumerate(jobs):
        Job.objects.filter(pk=job.pk).update(queued_at=base + timedelta(seconds=age))
    held, later, elsewhere, taken, first, second = jobs
    Job.objects.filter(pk=later.pk).update(not_before=timezone.now() + timedelta(hours=1))
    Job.objects.filter(pk=elsewhere.pk).update(queue="pool.other")
    Job.objects.filter(pk=taken.pk).update(status="running")
    agent, _ = register_agent(enrollment_token=None, name="puller", pools=["default"], labels={})
    leases = [uuid.uuid4() for _ in range(3)]
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
    )
    try:
        other.execute("SELECT 1 FROM executions_job WHERE id = %s FOR UPDATE", [held.pk])
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            pulled = pull_due_jobs(agent, leases, timezone.now())
        other.rollback()
    finally:
        other.close()

    assert len(queries.captured_queries) == 1
    assert [(job.pk, job.lease) for job in pulled] == [
        (first.pk, leases[0]),
        (second.pk, leases[1]),
    ]
    for job in pulled:
        expected = claimed_jobs().get(pk=job.pk)
        assert field_values(job) == field_values(expected)
        assert (job.status, job.agent_id, job.wait_reason) == ("running", agent.pk, "")
        assert job.started_at is not None and job.dispatched_at is not None
        assert {"nodes", "inputs", "vars", "outputs"} <= job.execution.get_deferred_fields()
        with CaptureQueriesContext(connection) as reading:
            spec = job_spec(job)
        assert reading.captured_queries == []
        assert spec["workflow"] == "hot" and spec["lease"] == str(job.lease)
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert {statuses[job.pk] for job in (held, later, elsewhere)} <= {"pending", "dispatched"}
    assert pull_due_jobs(agent, leases, timezone.now()) == [held], "the held job once free"


SQLITE_PROBE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import transaction
from agents.services import authenticate_agent, register_agent
from executions.advancing import start_execution
from executions.hot_path import (lock_execution, lock_executions_of_jobs, lock_jobs,
    save_execution_state)
from executions.models import Job
from orchestrator.services import create_workflow
execution = start_execution(create_workflow({"slug": "q", "nodes": [
    {"id": "a", "action": "shell", "with": {"command": "true"}}]}))
job = Job.objects.get(execution=execution)
with transaction.atomic():
    of_job = lock_executions_of_jobs([job.pk])[execution.pk]
    print(lock_execution(execution.pk).workflow.slug, of_job.nodes["a"])
    locked = lock_execution(execution.pk)
    locked.status, locked.nodes = "cancelled", {"a": {"status": "skipped"}}
    save_execution_state(locked)
    print(lock_execution(execution.pk).status, lock_execution(execution.pk).nodes["a"])
    print(lock_jobs([job.pk])[job.pk].node_id, lock_jobs([job.pk])[job.pk].params["command"])
agent, token = register_agent(enrollment_token=None, name="s", pools=["p"], labels={})
print(authenticate_agent(token).name)
from django.contrib.auth import get_user_model
from orchestrator.authentication import create_api_token, live_token
from orchestrator.tokens import hash_token
raw = create_api_token(get_user_model().objects.create_user("u1"), "t")
print(live_token(hash_token(raw)).user.username)
import uuid
from django.utils import timezone
from executions.hot_path import claim_with_leases, save_execution_states
from executions.models import Execution
other = start_execution(execution.workflow)
with transaction.atomic():
    both = lock_executions_of_jobs([Job.objects.get(execution=other).pk, job.pk])
    for locked in both.values():
        locked.error = f"e{locked.pk == other.pk:d}"
    save_execution_states(list(both.values()))
    lease = uuid.uuid4()
    claim_with_leases({Job.objects.get(execution=other).pk: lease}, agent, timezone.now())
print(sorted(Execution.objects.values_list("error", flat=True)))
claimed = Job.objects.get(execution=other)
print(claimed.status, claimed.agent.name, claimed.lease == lease)
"""


def test_the_hand_written_queries_work_on_sqlite(tmp_path):
    """`make run` uses SQLite: no row locks there, UUIDs stored as text."""
    output = run_in_fresh_django(
        SQLITE_PROBE, f"sqlite:///{tmp_path / 'switchyard.sqlite3'}", tmp_path
    )
    assert output == [
        "q {'status': 'running', 'taken': []}",
        "cancelled {'status': 'skipped'}",
        "a true",
        "s",
        "u1",
        "['e0', 'e1']",
        "running s True",
    ], output


@pytest.mark.django_db
def test_a_claimed_job_carries_its_workflow_slug_and_none_of_its_runs_json():
    """A claim answers with `job_spec`, which reads nothing of the run but its workflow's slug:
    the run's node states and the rest of its workflow stay in the database (a fan-out's claims
    would otherwise decode them once per job)."""
    from executions.hot_path import claimed_jobs
    from executions.jobs import job_spec

    execution = start_execution(create_workflow(CHAIN))
    expected = Job.objects.get(execution=execution, node_id="a")

    job = claimed_jobs().get(pk=expected.pk)

    assert field_values(job) == field_values(expected)
    assert {"nodes", "inputs", "vars", "outputs"} <= job.execution.get_deferred_fields()
    workflow = job.execution.workflow
    loaded = {f.attname for f in workflow._meta.concrete_fields} - workflow.get_deferred_fields()
    assert loaded == {"id", "slug"}
    with CaptureQueriesContext(connection) as queries:
        spec = job_spec(job)
    assert queries.captured_queries == []
    assert spec["workflow"] == "hot" and spec["params"] == {"command": "echo hi"}
