"""Starting many runs of one workflow in one request and one transaction.

A client that starts a run per host, per ticket or per file would otherwise pay a request, a
transaction and a doorbell for each. Here the runs are inserted together, each is advanced
as a single start would be, and their state, first jobs and log events are written with one
statement each (`DeferredWrites`). Their first jobs share the pool queue, so the doorbells
follow the fan-out rule: as many as the online agents have slots; reports pull the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from executions.advancing import (
    Advancer,
    DeferredWrites,
    new_execution,
    record_creation,
    version_to_run,
)
from executions.models import Execution
from executions.routing import QueueRouter
from orchestrator.api_errors import join_path
from orchestrator.copy_insert import insert_rows
from orchestrator.engine import DefinitionError, ValidationIssue
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.services import spec_for_version


@dataclass(frozen=True)
class StartedRun:
    """A run of the batch: started now (`created`), or earlier with the same idempotency key."""

    id: uuid.UUID
    status: str
    created_at: datetime
    created: bool


@dataclass(frozen=True)
class RunRequest:
    """One run of a batch: its inputs, labels and optional idempotency key."""

    inputs: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""


def start_executions(
    workflow: Workflow,
    runs: Sequence[RunRequest],
    *,
    trigger: dict[str, Any],
    user=None,
    version: WorkflowVersion | None = None,
) -> list[StartedRun]:
    """Start one execution per request in `runs`, all or none, and answer for each in order.
    A run whose idempotency key an earlier start of the workflow holds is not started again:
    its answer is that earlier run.

    Raises ExecutionConflict when the workflow cannot run, DefinitionError naming every run
    whose inputs do not fit (paths `runs[i].inputs.…`), and IntegrityError when another start takes
    one of the keys meanwhile (nothing is created then; a retry answers with that run)."""
    version = version_to_run(workflow, version)
    spec = spec_for_version(version)
    now = timezone.now()
    earlier = earlier_runs(workflow, [run.idempotency_key for run in runs if run.idempotency_key])
    answers: list[StartedRun | Execution] = []
    executions = []
    problems: list[ValidationIssue] = []
    for index, run in enumerate(runs):
        if run.idempotency_key in earlier:
            answers.append(earlier[run.idempotency_key])
            continue
        try:
            execution = new_execution(
                workflow,
                version,
                spec,
                now,
                inputs=run.inputs,
                labels=run.labels,
                trigger=trigger,
                user=user,
                idempotency_key=run.idempotency_key,
            )
        except DefinitionError as error:
            problems += [
                ValidationIssue(join_path(f"runs[{index}]", issue.path), issue.message)
                for issue in error.issues
            ]
            continue
        executions.append(execution)
        answers.append(execution)
    if problems:
        raise DefinitionError(problems)
    if executions:
        with transaction.atomic():
            insert_rows(Execution, executions)
            writes = DeferredWrites()
            router = QueueRouter()
            for execution in executions:
                recorder = writes.recorder(execution.pk)
                record_creation(recorder, execution)
                Advancer(execution, spec, recorder, writes=writes, router=router).advance()
            writes.write()
    return [
        answer
        if isinstance(answer, StartedRun)
        else StartedRun(answer.pk, answer.status, answer.created_at, created=True)
        for answer in answers
    ]


def earlier_runs(workflow: Workflow, keys: list[str]) -> dict[str, StartedRun]:
    """The runs of `workflow` already started with these idempotency keys, by key."""
    if not keys:
        return {}
    rows = Execution.objects.filter(workflow=workflow, idempotency_key__in=keys).values_list(
        "idempotency_key", "pk", "status", "created_at"
    )
    return {
        key: StartedRun(pk, status, created_at, created=False)
        for key, pk, status, created_at in rows
    }
