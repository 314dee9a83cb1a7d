"""The hand-written SQL of the agent-report hot path: the row locks every transition of a run
takes (the execution with its workflow and version, the jobs a report names) and the writes a
report makes (job results, the run's advanced state), and the claim: which jobs are due, the
pull that claims them and the shape a claimed job is read in. Rows are loaded through
`ModelColumns`; see `orchestrator.row_loading` for why these are not ORM queries."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from functools import cache

from django.db import connection
from django.db.models import Case, Q, QuerySet, UUIDField, Value, When
from django.db.models.functions import Coalesce

from executions.models import JOB_UNCLAIMED, Execution, Job, JobStatus
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.row_loading import ModelColumns, key_param

EXECUTION = ModelColumns(Execution, "e")
WORKFLOW = ModelColumns(Workflow, "w")
VERSION = ModelColumns(WorkflowVersion, "v", exclude={"definition", "source"})
JOB = ModelColumns(Job, "j")


def lock_clause(strength: str, of: str) -> str:
    """`FOR <strength> OF <alias>` where the database has row locks (not SQLite, where a write
    transaction locks the whole file)."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    if strength == "NO KEY UPDATE" and not features.has_select_for_no_key_update:
        strength = "UPDATE"
    return f" FOR {strength} OF {of}" if features.has_select_for_update_of else f" FOR {strength}"


@cache
def execution_lock_sql(vendor: str, where: str) -> str:
    return (
        f"SELECT {EXECUTION.sql}, {WORKFLOW.sql}, {VERSION.sql} FROM {EXECUTION.table} "
        f"JOIN {WORKFLOW.table} ON w.id = e.workflow_id "
        f"JOIN {VERSION.table} ON v.id = e.version_id "
        f"WHERE {where}{lock_clause('NO KEY UPDATE', 'e')}"
    )


def locked_execution(where: str, param) -> Execution | None:
    with connection.cursor() as cursor:
        cursor.execute(execution_lock_sql(connection.vendor, where), [param])
        row = cursor.fetchone()
    return None if row is None else execution_from_row(row)


def execution_from_row(row) -> Execution:
    execution = EXECUTION.load(row, 0, connection)
    execution.workflow = WORKFLOW.load(row, len(EXECUTION), connection)
    execution.version = VERSION.load(row, len(EXECUTION) + len(WORKFLOW), connection)
    return execution


def lock_execution(execution_id) -> Execution:
    """Lock an execution row for a transition. FOR NO KEY UPDATE: rows referencing it (events,
    jobs) can still be inserted meanwhile, so claims never deadlock with advancing. The
    version's definition is not read (the parsed spec is cached per version). Raises
    `Execution.DoesNotExist` when there is no such run."""
    execution = locked_execution("e.id = %s", key_param(Execution, execution_id, connection))
    if execution is None:
        raise Execution.DoesNotExist(f"no execution {execution_id}")
    return execution


def lock_executions_of_jobs(job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Execution]:
    """Lock the executions the named jobs belong to, as `lock_execution` does, in one statement
    and in id order (two transactions locking overlapping sets then wait for each other
    instead of deadlocking), without reading the jobs first; returns them by id, leaving out
    unknown jobs."""
    if not job_ids:
        return {}
    keys = ", ".join(["%s"] * len(job_ids))
    where = f'e.id IN (SELECT "execution_id" FROM "executions_job" WHERE "id" IN ({keys}))'
    with connection.cursor() as cursor:
        cursor.execute(
            execution_lock_sql(connection.vendor, f"{where} ORDER BY e.id"),
            [key_param(Job, job_id, connection) for job_id in job_ids],
        )
        rows = cursor.fetchall()
    return {execution.pk: execution for execution in map(execution_from_row, rows)}


@cache
def jobs_lock_sql(vendor: str, count: int) -> str:
    keys = ", ".join(["%s"] * count)
    return f"SELECT {JOB.sql} FROM {JOB.table} WHERE j.id IN ({keys}){lock_clause('UPDATE', 'j')}"


def lock_jobs(job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Job]:
    """Lock the named jobs (FOR UPDATE) and return them by id; unknown ids are left out."""
    if not job_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            jobs_lock_sql(connection.vendor, len(job_ids)),
            [key_param(Job, job_id, connection) for job_id in job_ids],
        )
        jobs = JOB.load_all(cursor.fetchall(), connection)
    return {job.pk: job for job in jobs}


EXECUTION_STATE_FIELDS = (
    "nodes",
    "status",
    "outputs",
    "error",
    "finished_at",
    "started_at",
    "next_timer_at",
)


def execution_state_fields() -> list:
    return fields_named(Execution, EXECUTION_STATE_FIELDS)


@cache
def execution_state_sql(vendor: str) -> str:
    assignments = ", ".join(f'"{field.column}" = %s' for field in execution_state_fields())
    return f'UPDATE "{Execution._meta.db_table}" SET {assignments} WHERE "id" = %s'


def save_execution_state(execution: Execution) -> None:
    """Write what advancing changes on a locked run (its node states, status, outputs, error,
    timings, next timer): `save(update_fields=…)` compiled to the same UPDATE at several times
    the cost of running it, on every report."""
    params = [
        field.get_db_prep_save(getattr(execution, field.attname), connection)
        for field in execution_state_fields()
    ]
    params.append(key_param(Execution, execution.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(execution_state_sql(connection.vendor), params)


def save_execution_states(executions: list[Execution]) -> None:
    """`save_execution_state` for several runs: on PostgreSQL one `UPDATE … FROM (VALUES …)`
    (as `save_results` does for jobs), elsewhere one UPDATE per run."""
    if len(executions) <= 1 or connection.vendor != "postgresql":
        for execution in executions:
            save_execution_state(execution)
        return
    update_from_values(Execution, EXECUTION_STATE_FIELDS, executions)


# What a final report writes on its job.
RESULT_FIELDS = (
    "error_kind",
    "status",
    "exit_code",
    "stdout",
    "stderr",
    "outputs",
    "http",
    "error",
    "duration_ms",
    "finished_at",
    "assertions",
)


def save_results(jobs: list[Job]) -> None:
    """Write the reported fields of several jobs in one statement. On PostgreSQL this is an
    `UPDATE … FROM (VALUES …)` written once per batch size: Django's `bulk_update` builds a CASE
    per field and row, which took half of a fan-out batch's time, and compiling even a single
    `save(update_fields=…)` cost more than running it. Elsewhere (the SQLite quick start) one
    UPDATE per job."""
    if connection.vendor != "postgresql":
        for job in jobs:
            job.save(update_fields=RESULT_FIELDS)
        return
    update_from_values(Job, RESULT_FIELDS, jobs)


def update_from_values(model, names: tuple[str, ...], rows: list) -> None:
    """Write the fields `names` of the instances `rows` of `model` in one
    `UPDATE … FROM (VALUES …)` (PostgreSQL)."""
    fields = fields_named(model, names)
    params = []
    for row in rows:
        params.append(key_param(model, row.pk, connection))
        params += [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(update_from_values_sql(model, names, len(rows)), params)


@cache
def fields_named(model, names: tuple[str, ...]) -> list:
    return [model._meta.get_field(name) for name in names]


@cache
def update_from_values_sql(model, names: tuple[str, ...], count: int) -> str:
    """`UPDATE <model's table> SET <names> FROM (VALUES …)` for `count` rows, each row the key
    then the fields' values, cast to their column types."""
    fields = fields_named(model, names)
    key = model._meta.pk
    casts = [key.db_type(connection), *(field.db_type(connection) for field in fields)]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    quote = connection.ops.quote_name
    columns = [quote(field.column) for field in fields]
    assignments = ", ".join(f"{column} = v.{column}" for column in columns)
    pk = quote(key.column)
    values = ", ".join([row] * count)
    return (
        f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "
        f"FROM (VALUES {values}) AS v({pk}, {', '.join(columns)}) WHERE t.{pk} = v.{pk}"
    )


JOB_COLUMNS = tuple(field.name for field in Job._meta.concrete_fields)


def claimed_jobs() -> QuerySet[Job]:
    """Jobs as a claim answers them: every column of the job, and of its run only the
    workflow's slug (`job_spec`). A run's node states and a workflow's definition are JSON that
    grows with the graph, and a fan-out's claims would decode them once per job."""
    return Job.objects.select_related("execution__workflow").only(
        *JOB_COLUMNS, "execution__workflow", "execution__workflow__slug"
    )


def due_by(now) -> Q:
    return Q(not_before__isnull=True) | Q(not_before__lte=now)


def mark_claimed(jobs, agent, lease, now) -> int:
    """The claim itself: one conditional UPDATE of the given (filtered) rows. `lease` is a UUID
    or an expression (one lease per row)."""
    return jobs.update(
        status=JobStatus.RUNNING,
        agent=agent,
        lease=lease,
        started_at=now,
        wait_reason="",
        dispatched_at=Coalesce("dispatched_at", now),
    )


def claim_with_leases(lease_of: dict[uuid.UUID, uuid.UUID], agent, now) -> None:
    """`mark_claimed` for the locked, unclaimed jobs `lease_of` names, each with its own lease,
    with a CASE over the ids: `pull_due_jobs` where there is no `UPDATE … RETURNING` of
    locked rows (SQLite)."""
    lease = Case(
        *[When(pk=job_id, then=Value(lease)) for job_id, lease in lease_of.items()],
        output_field=UUIDField(),
    )
    mark_claimed(Job.objects.filter(pk__in=list(lease_of)), agent, lease, now)


def pull_due_jobs(agent, leases: list[uuid.UUID], now) -> list[Job]:
    """Lock up to `len(leases)` of the oldest due, unclaimed jobs of the agent's queues
    (skipping rows another pull holds), claim them with the leases in that order, and return
    them as `claimed_jobs` loads them: in one statement on PostgreSQL, in three on SQLite
    (which has no row locks to skip)."""
    if connection.vendor == "postgresql":
        return pull_due_jobs_returning(agent, leases, now)
    ids = list(
        Job.objects.select_for_update(skip_locked=True)
        .filter(status__in=JOB_UNCLAIMED, queue__in=agent.queues)
        .filter(due_by(now))
        .order_by("queued_at")
        .values_list("pk", flat=True)[: len(leases)]
    )
    if not ids:
        return []
    claim_with_leases(dict(zip(ids, leases, strict=False)), agent, now)
    return list(claimed_jobs().filter(pk__in=ids))


def pull_due_jobs_returning(agent, leases: list[uuid.UUID], now) -> list[Job]:
    """PostgreSQL's pull, in one statement: lock up to `len(leases)` of the oldest due,
    unclaimed jobs of the agent's queues (skipping rows another pull holds), claim them with
    the leases in that order, and return them as `claimed_jobs` loads them (with their run's
    workflow slug). Three statements before: the locking SELECT, the claim and the re-read,
    each compiled by the ORM."""
    queues = agent.queues
    params: list = [*map(str, JOB_UNCLAIMED), *queues, now, len(leases)]
    params += [str(JobStatus.RUNNING), agent.pk, now, now]
    for number, lease in enumerate(leases, start=1):
        params += [number, lease]
    with connection.cursor() as cursor:
        cursor.execute(pull_due_jobs_sql(len(queues), len(leases)), params)
        rows = cursor.fetchall()
    jobs = []
    width = len(JOB)
    for row in rows:
        job = JOB.load(row, 0, connection)
        workflow = Workflow.from_db(connection.alias, ["id", "slug"], row[width : width + 2])
        job.execution = Execution.from_db(
            connection.alias, ["id", "workflow_id"], [job.execution_id, workflow.pk]
        )
        job.execution.workflow = workflow
        jobs.append(job)
    return jobs


@cache
def pull_due_jobs_sql(queues: int, leases: int) -> str:
    unclaimed = ", ".join(["%s"] * len(JOB_UNCLAIMED))
    queue_keys = ", ".join(["%s"] * queues)
    numbered_leases = ", ".join(["(%s::int, %s::uuid)"] * leases)
    return (
        "WITH picked AS ("
        f"SELECT j.id, j.queued_at FROM {JOB.table} WHERE j.status IN ({unclaimed}) "
        f"AND j.queue IN ({queue_keys}) AND (j.not_before IS NULL OR j.not_before <= %s) "
        "ORDER BY j.queued_at LIMIT %s FOR UPDATE OF j SKIP LOCKED), "
        "numbered AS (SELECT id, row_number() OVER (ORDER BY queued_at) AS n FROM picked) "
        f"UPDATE {JOB.table} SET status = %s, agent_id = %s, lease = v.lease, started_at = %s, "
        "wait_reason = '', dispatched_at = COALESCE(j.dispatched_at, %s) "
        f"FROM numbered p JOIN (VALUES {numbered_leases}) AS v(n, lease) ON v.n = p.n, "
        f"{EXECUTION.table}, {WORKFLOW.table} "
        "WHERE j.id = p.id AND e.id = j.execution_id AND w.id = e.workflow_id "
        f"RETURNING {JOB.sql}, w.id, w.slug"
    )
