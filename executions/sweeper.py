"""The control worker's periodic sweep. Every deadline lives in PostgreSQL timestamps, so a sweep
after any restart finds exactly what is due: unpublished or due jobs, job and execution timeouts,
wait timers, approval expiry, lost agents, and child executions whose parent missed the news."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest, ApprovalStatus
from executions.advancing import (
    ACTIVE_EXECUTION,
    Advancer,
    lock_execution,
    pending_jobs_waiting_for_agents,
    resume_due_waits,
    settle_child,
)
from executions.dispatch import doorbells_worth_ringing, publish_jobs
from executions.jobs import fail_job
from executions.live import publish_agent_change
from executions.models import EXECUTION_TERMINAL, Execution, ExecutionStatus, Job, JobStatus
from executions.recorder import EventRecorder
from executions.routing import QueueRouter, online_cutoff
from orchestrator.ops import record_sweep
from orchestrator.services import spec_for_version

logger = logging.getLogger("switchyard.sweeper")
BATCH = 500


def due_jobs(now: datetime) -> list[tuple[str, str]]:
    """Jobs to (re)publish: never-published ones, retries now due, and dispatched jobs nobody
    claimed for a long time (the broker may have lost them); duplicates are dropped by claims.

    Never-published jobs of a wide queue (a fan-out wider than its slots leaves them pending for
    reports to pull) are rung only up to the slots serving the queue, counting the doorbells
    still unanswered: more would find every slot busy."""
    pending_cutoff = now - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_PENDING_AFTER)
    dispatched_cutoff = now - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_DISPATCHED_AFTER)
    rows = list(
        Job.objects.exclude(queue="")
        .filter(
            Q(status=JobStatus.PENDING, not_before__isnull=True, queued_at__lte=pending_cutoff)
            | Q(status=JobStatus.PENDING, not_before__lte=now)
            | Q(status=JobStatus.DISPATCHED, dispatched_at__lte=dispatched_cutoff)
        )
        .values_list("id", "queue", "status", "not_before")[:BATCH]
    )
    stale = [job_id for job_id, _, status, _ in rows if status == JobStatus.DISPATCHED]
    if stale:
        Job.objects.filter(pk__in=stale, status=JobStatus.DISPATCHED).update(dispatched_at=now)
    never_rung, others = [], []
    for job_id, queue, status, not_before in rows:
        first_bell = status == JobStatus.PENDING and not_before is None
        (never_rung if first_bell else others).append((str(job_id), queue))
    return doorbells_worth_ringing(never_rung, counting_unanswered=True) + others


def route_waiting_jobs() -> list[tuple[str, str]]:
    """Jobs that found no matching online agent have no queue yet: route them once one comes."""
    router = QueueRouter()
    routed = []
    for job in pending_jobs_waiting_for_agents():
        route = router.route(pool=job.pool, agent="", labels=job.labels)
        if not route.queue:
            continue
        if Job.objects.filter(pk=job.pk, status=JobStatus.PENDING, queue="").update(
            queue=route.queue, wait_reason=""
        ):
            routed.append((str(job.pk), route.queue))
            recorder = EventRecorder(job.execution_id)
            recorder.add(
                "job.routed",
                f"job for '{job.node_id}' routed to {route.queue}",
                node_id=job.node_id,
                job_id=job.pk,
            )
            recorder.flush()
    return routed


def expire_jobs(now: datetime) -> int:
    grace = settings.SWITCHYARD_JOB_TIMEOUT_GRACE
    overdue = [
        job
        for job in Job.objects.filter(status=JobStatus.RUNNING, timeout_s__isnull=False).only(
            "id", "started_at", "timeout_s"
        )[:BATCH]
        if job.started_at and job.started_at + timedelta(seconds=job.timeout_s + grace) < now
    ]
    return sum(
        fail_job(
            job.pk,
            f"no result within {job.timeout_s:g}s (+{grace:g}s grace)",
            status=JobStatus.TIMEOUT,
            now=now,
        )
        for job in overdue
    )


def expire_executions(now: datetime) -> int:
    count = 0
    overdue = Execution.objects.filter(deadline_at__lt=now, status__in=ACTIVE_EXECUTION)
    for execution_id in list(overdue.values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            execution = lock_execution(execution_id)
            if execution.is_terminal:
                continue
            recorder = EventRecorder(execution.pk, now)
            execution.error = "execution timeout exceeded"
            advancer = Advancer(execution, spec_for_version(execution.version), recorder)
            advancer.close(ExecutionStatus.TIMED_OUT, reason="execution timed out")
            advancer.save()
            count += 1
    return count


def fire_timers(now: datetime) -> int:
    due = Execution.objects.filter(next_timer_at__lte=now, status__in=ACTIVE_EXECUTION)
    return sum(resume_due_waits(pk, now) for pk in list(due.values_list("pk", flat=True)[:BATCH]))


def expire_approvals(now: datetime) -> int:
    from approvals.services import expire_request

    due = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=now)
    return sum(expire_request(pk, now) for pk in list(due.values_list("pk", flat=True)[:BATCH]))


def escalate_approvals(now: datetime) -> int:
    from approvals.services import escalate_request

    due = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING, escalated_at__isnull=True, escalate_at__lte=now
    )
    return sum(escalate_request(pk, now) for pk in list(due.values_list("pk", flat=True)[:BATCH]))


def announce_agents_gone_offline(now: datetime) -> int:
    """Push `agents.changed` for agents that crossed the offline threshold since the last few
    sweeps (a silent agent sends nothing itself, so the agents page learns it from here)."""
    cutoff = online_cutoff()
    window = timedelta(seconds=max(2 * settings.SWITCHYARD_SWEEP_INTERVAL, 1))
    names = list(
        Agent.objects.filter(
            last_heartbeat__lt=cutoff, last_heartbeat__gte=cutoff - window
        ).values_list("name", flat=True)
    )
    for name in names:
        publish_agent_change(name)
    return len(names)


def fail_jobs_of_lost_agents(now: datetime) -> int:
    """Agents silent for three heartbeat intervals are offline; their running jobs fail with
    "agent lost" and follow their retry policy (the agent kills them itself on its side).

    A job the agent claimed within those three intervals is spared: the claim itself proves the
    agent alive (e.g. a partition just healed and its next heartbeat is on its way). If the agent
    stays silent, the job is failed once its claim is that old too."""
    cutoff = online_cutoff()
    lost = Agent.objects.filter(last_heartbeat__lt=cutoff).values_list("pk", "name")
    count = 0
    for agent_id, name in lost:
        for job_id in Job.objects.filter(
            agent_id=agent_id, status=JobStatus.RUNNING, started_at__lt=cutoff
        ).values_list("pk", flat=True)[:BATCH]:
            count += fail_job(job_id, f"agent lost ({name} stopped heartbeating)", now=now)
    return count


def settle_orphaned_children() -> int:
    """Children that ended while their parent missed the after-commit notification."""
    now = timezone.now()
    children = Execution.objects.filter(
        parent__isnull=False,
        status__in=EXECUTION_TERMINAL,
        parent__status__in=ACTIVE_EXECUTION,
        finished_at__range=(now - timedelta(hours=1), now - timedelta(seconds=2)),
    )
    count = 0
    for child_id in list(children.values_list("pk", flat=True)[:BATCH]):
        settle_child(child_id)
        count += 1
    return count


def sweep(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    figures = {
        "published": len(publish_jobs(due_jobs(now) + route_waiting_jobs())),
        "jobs_timed_out": expire_jobs(now),
        "agent_lost": fail_jobs_of_lost_agents(now),
        "agents_offline": announce_agents_gone_offline(now),
        "executions_timed_out": expire_executions(now),
        "timers_fired": fire_timers(now),
        "approvals_expired": expire_approvals(now),
        "approvals_escalated": escalate_approvals(now),
        "children_settled": settle_orphaned_children(),
    }
    if any(figures.values()):
        logger.info("sweep: %s", figures)
    record_sweep(now)
    return figures
