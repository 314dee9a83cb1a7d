"""Rows for the operations tests, created directly so their timestamps can be set."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest
from executions.models import Execution, ExecutionEvent, Job, JobOutputChunk
from orchestrator.models import SecretUsage, Workflow
from orchestrator.services import create_workflow

_serial = itertools.count()


def workflow(slug: str | None = None) -> Workflow:
    slug = slug or f"ops-{next(_serial)}-{uuid.uuid4().hex[:6]}"
    return create_workflow(
        {"slug": slug, "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}]}
    )


def execution(
    wf: Workflow,
    status: str = "completed",
    *,
    age: timedelta = timedelta(0),
    now: datetime | None = None,
    with_children: bool = True,
) -> Execution:
    """An execution created `age` ago (finished then too, when terminal) with one of every
    dependent row: a job, an output chunk, a log event, an approval and a secret usage."""
    now = now or timezone.now()
    at = now - age
    finished = status in {"completed", "failed", "cancelled", "timed_out"}
    run = Execution.objects.create(
        workflow=wf,
        version=wf.published_version,
        status=status,
        started_at=at,
        finished_at=at if finished else None,
    )
    Execution.objects.filter(pk=run.pk).update(created_at=at)
    run.refresh_from_db()
    if with_children:
        job = Job.objects.create(
            execution=run,
            node_id="a",
            action="shell",
            status="completed" if finished else "running",
            queue="pool.default",
            duration_ms=1500 if finished else None,
            started_at=at,
            finished_at=at if finished else None,
        )
        JobOutputChunk.objects.create(job=job, seq=1, stream="stdout", data="hello\n")
        ExecutionEvent.objects.create(
            execution=run, timestamp=at, kind="node.entered", node_id="a", job=job, message="x"
        )
        ApprovalRequest.objects.create(
            execution=run, node_id="gate", status="approved" if finished else "pending"
        )
        SecretUsage.objects.create(name="token", execution=run, job=job)
    return run


def remaining(run: Execution, job_ids: list) -> dict[str, int]:
    """How many rows of each table still belong to `run` (`job_ids`: its jobs, taken before)."""
    return {
        "Execution": Execution.objects.filter(pk=run.pk).count(),
        "Job": Job.objects.filter(execution_id=run.pk).count(),
        "JobOutputChunk": JobOutputChunk.objects.filter(job_id__in=job_ids).count(),
        "ExecutionEvent": ExecutionEvent.objects.filter(
            Q(execution_id=run.pk) | Q(job_id__in=job_ids)
        ).count(),
        "ApprovalRequest": ApprovalRequest.objects.filter(execution_id=run.pk).count(),
        "SecretUsage": SecretUsage.objects.filter(
            Q(execution_id=run.pk) | Q(job_id__in=job_ids)
        ).count(),
    }
