"""Execution lifecycle: start, advance, claim, report, cancel, sweep.

Every state change happens in one transaction that locks the execution row first (then job
rows), so concurrent reports for a fan-out serialise per execution and never deadlock. The
graph decisions themselves come from the pure `orchestrator.engine.plan_execution`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from executions.dispatch import publish_after_commit
from executions.models import (
    JOB_TERMINAL,
    JOB_UNCLAIMED,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
)
from executions.recorder import EventRecorder
from orchestrator.engine import (
    NodeSpec,
    NodeState,
    NodeStatus,
    TemplateError,
    WorkflowSpec,
    coerce_inputs,
    evaluate_expression,
    plan_execution,
    render_value,
    resolve_node,
)
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.services import spec_for_version

NODE_REFERENCE = re.compile(r"nodes\s*(?:\.\s*|\[\s*['\"])([A-Za-z_][A-Za-z0-9_-]*)")
RESULT_STATUSES = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "timeout": JobStatus.TIMEOUT,
}


class ExecutionConflict(Exception):
    """The execution or job is in a state that forbids the request (HTTP 409)."""


class JobNotFound(Exception):
    """No job with that id (HTTP 404)."""


@dataclass
class JobReport:
    """An agent's final report for a job it claimed."""

    lease: uuid.UUID
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] | None = None
    duration_ms: int | None = None
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


def states_from_execution(execution: Execution) -> dict[str, NodeState]:
    return {
        node_id: NodeState(
            status=NodeStatus(data["status"]),
            taken=frozenset(data.get("taken", ())),
            reason=data.get("reason", ""),
        )
        for node_id, data in execution.nodes.items()
    }


def states_to_json(states: dict[str, NodeState]) -> dict[str, dict[str, Any]]:
    return {
        node_id: {
            "status": str(state.status),
            "taken": sorted(state.taken),
            "reason": state.reason,
        }
        for node_id, state in states.items()
    }


def job_output(job: Job) -> dict[str, Any]:
    """The `nodes.<id>.output` a finished job exposes to templates."""
    return {
        "stdout": job.stdout,
        "stderr": job.stderr,
        "exit_code": job.exit_code,
        "duration_ms": job.duration_ms,
        "outputs": job.outputs,
        "http": job.http,
        "error": job.error,
        "attempt": job.attempt,
        "status": job.status,
    }


class Advancer:
    """Applies engine plans to one locked execution inside the caller's transaction."""

    def __init__(self, execution: Execution, spec: WorkflowSpec, recorder: EventRecorder) -> None:
        self.execution = execution
        self.spec = spec
        self.recorder = recorder
        self.now = recorder.now
        self.states = states_from_execution(execution)
        self.new_jobs: list[Job] = []
        self.outputs_cache: dict[str, dict[str, Any]] | None = None

    # -- template context -------------------------------------------------------------
    def node_outputs(self, node_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Latest finished attempt per referenced node, fetched in one query."""
        if self.outputs_cache is None:
            self.outputs_cache = {}
        missing = node_ids - self.outputs_cache.keys()
        if missing:
            jobs = (
                Job.objects.filter(execution_id=self.execution.pk, node_id__in=missing)
                .filter(status__in=JOB_TERMINAL)
                .order_by("node_id", "attempt")
            )
            for job in jobs:
                self.outputs_cache[job.node_id] = job_output(job)
        return self.outputs_cache

    def context(self, node: NodeSpec) -> dict[str, Any]:
        referenced = set(NODE_REFERENCE.findall(repr(node.raw)))
        outputs = self.node_outputs(referenced & self.spec.nodes.keys()) if referenced else {}
        nodes = {}
        for node_id in self.spec.nodes:
            state = self.states.get(node_id)
            entry: dict[str, Any] = {"status": str(state.status) if state else "pending"}
            if node_id in outputs:
                entry["output"] = outputs[node_id]
                entry["outputs"] = outputs[node_id]["outputs"]
            nodes[node_id] = entry
        return self.base_context() | {"nodes": nodes}

    def base_context(self) -> dict[str, Any]:
        execution = self.execution
        trigger = execution.trigger or {}
        return {
            "inputs": execution.inputs,
            "trigger": trigger,
            "event": trigger.get("event", {}),
            "vars": execution.vars,
            "execution": {
                "id": str(execution.pk),
                "url": f"{settings.SWITCHYARD_BASE_URL}/executions/{execution.pk}/",
                "started_at": execution.started_at.isoformat() if execution.started_at else None,
                "workflow": execution.workflow.slug,
            },
        }

    # -- advancing ----------------------------------------------------------------------
    def resolve(self, node_id: str, outcome: str, reason: str = "") -> None:
        self.states[node_id] = resolve_node(self.spec, node_id, outcome, reason)

    def fail_node(self, node_id: str, reason: str, kind: str = "node.failed") -> None:
        self.resolve(node_id, "error", reason)
        self.recorder.add(
            kind, f"node '{node_id}' failed: {reason}", level="error", node_id=node_id
        )

    def advance(self) -> None:
        """Plan, start what is ready, and repeat while nodes resolve inline."""
        if self.execution.is_terminal:
            return
        while True:
            plan = plan_execution(self.spec, self.states)
            for event in plan.events:
                self.recorder.add(
                    "engine",
                    event.message,
                    level=event.level,
                    node_id=event.node_id or "",
                    data=event.data,
                )
            self.states.update(plan.resolved)
            if plan.outcome is not None:
                self.finish(plan.outcome, plan.failed_nodes)
                break
            if not plan.start:
                break
            resolved_inline = False
            for node_id in plan.start:
                self.start_node(self.spec.nodes[node_id])
                if self.states[node_id].status in (
                    NodeStatus.COMPLETED,
                    NodeStatus.FAILED,
                    NodeStatus.SKIPPED,
                ):
                    resolved_inline = True
            if not resolved_inline:
                break
        self.save()

    def start_node(self, node: NodeSpec) -> None:
        self.recorder.add("node.entered", f"node '{node.id}' entered", node_id=node.id)
        if node.run_if:
            try:
                value = evaluate_expression(node.run_if, self.context(node))
            except TemplateError as error:
                self.fail_node(node.id, f"run_if: {error}", kind="template.error")
                return
            self.recorder.add(
                "condition.evaluated",
                f"run_if of '{node.id}' is {value!r}",
                node_id=node.id,
                data={"expression": node.run_if, "value": bool(value)},
            )
            if not value:
                self.states[node.id] = NodeState(NodeStatus.SKIPPED, reason="run_if is false")
                self.recorder.add(
                    "node.skipped", f"node '{node.id}' skipped: run_if is false", node_id=node.id
                )
                return
        if node.type == "condition":
            try:
                value = bool(evaluate_expression(node.condition or "", self.context(node)))
            except TemplateError as error:
                self.fail_node(node.id, f"if: {error}", kind="template.error")
                return
            self.recorder.add(
                "condition.evaluated",
                f"condition '{node.id}' is {value}",
                node_id=node.id,
                data={"expression": node.condition, "value": value},
            )
            self.resolve(node.id, "true" if value else "false")
            return
        if node.type == "action":
            self.queue_job(node, attempt=1)
            return
        self.fail_node(node.id, f"node type '{node.type}' cannot run yet")

    def queue_job(self, node: NodeSpec, attempt: int, not_before: datetime | None = None) -> None:
        try:
            context = self.context(node)
            params = render_value(node.params, context, "with")
            pool = render_value(node.pool, context, "pool") if node.pool else None
            agent = render_value(node.agent, context, "agent") if node.agent else None
        except TemplateError as error:
            self.fail_node(node.id, str(error), kind="template.error")
            return
        if agent:
            queue, pool = f"agent.{agent}", ""
        else:
            pool = str(pool or settings.SWITCHYARD_DEFAULT_POOL)
            queue = f"pool.{pool}"
        job = Job(
            id=uuid.uuid4(),
            execution_id=self.execution.pk,
            node_id=node.id,
            action=node.action or "",
            attempt=attempt,
            pool=pool,
            queue=queue,
            params=params,
            timeout_s=node.timeout,
            not_before=not_before,
        )
        self.new_jobs.append(job)
        self.states[node.id] = NodeState(NodeStatus.RUNNING)
        when = f" not before {not_before.isoformat()}" if not_before else ""
        self.recorder.add(
            "job.queued",
            f"job for '{node.id}' (attempt {attempt}) queued on {queue}{when}",
            node_id=node.id,
            job_id=job.id,
            data={"queue": queue, "attempt": attempt},
        )

    def finish(self, outcome: str, failed_nodes: list[str]) -> None:
        execution = self.execution
        if outcome == "completed":
            try:
                execution.outputs = render_value(
                    self.spec.outputs, self.output_context(), "outputs"
                )
                execution.status = ExecutionStatus.COMPLETED
            except TemplateError as error:
                execution.status = ExecutionStatus.FAILED
                execution.error = f"outputs: {error}"
        else:
            execution.status = ExecutionStatus.FAILED
            reasons = [f"node '{n}' failed: {self.states[n].reason}" for n in failed_nodes]
            execution.error = "; ".join(reasons) or "failed"
        self.close(execution.status)

    def close(self, status: str) -> None:
        """Mark the execution terminal and cancel work that has not started."""
        execution = self.execution
        execution.status = status
        execution.finished_at = self.now
        cancelled = self.cancel_unclaimed_jobs(f"execution {status}")
        for node_id, state in self.states.items():
            if state.status == NodeStatus.PENDING:
                self.states[node_id] = NodeState(NodeStatus.SKIPPED, reason=f"execution {status}")
        level = "info" if status == ExecutionStatus.COMPLETED else "error"
        message = f"execution {status}" + (f": {execution.error}" if execution.error else "")
        self.recorder.add(
            "execution.finished",
            message,
            level=level,
            data={"status": status, "cancelled_jobs": cancelled},
        )

    def cancel_unclaimed_jobs(self, reason: str) -> int:
        for job in self.new_jobs:
            job.status = JobStatus.CANCELLED
            job.error = reason
            job.finished_at = self.now
        return Job.objects.filter(execution_id=self.execution.pk, status__in=JOB_UNCLAIMED).update(
            status=JobStatus.CANCELLED, error=reason, finished_at=self.now
        ) + len(self.new_jobs)

    def output_context(self) -> dict[str, Any]:
        referenced = set(NODE_REFERENCE.findall(repr(self.spec.outputs)))
        outputs = self.node_outputs(referenced & self.spec.nodes.keys()) if referenced else {}
        nodes = {
            node_id: {"status": str(state.status)}
            | (
                {"output": outputs[node_id], "outputs": outputs[node_id]["outputs"]}
                if node_id in outputs
                else {}
            )
            for node_id, state in self.states.items()
        }
        return self.base_context() | {"nodes": nodes}

    def save(self) -> None:
        self.execution.nodes = states_to_json(self.states)
        self.execution.save(
            update_fields=["nodes", "status", "outputs", "error", "finished_at", "started_at"]
        )
        if self.new_jobs:
            Job.objects.bulk_create(self.new_jobs)
            publish_after_commit(
                [
                    (str(j.id), j.queue)
                    for j in self.new_jobs
                    if j.status == JobStatus.PENDING and j.not_before is None
                ]
            )
        self.recorder.flush()


def initial_states(spec: WorkflowSpec) -> dict[str, NodeState]:
    return {node_id: NodeState(NodeStatus.PENDING) for node_id in spec.nodes}


def start_execution(
    workflow: Workflow,
    *,
    inputs: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    trigger: dict[str, Any] | None = None,
    user=None,
    version: WorkflowVersion | None = None,
    rerun_of: Execution | None = None,
) -> Execution:
    """Create an execution of `version` (default: the published one) and start its entry nodes."""
    if not workflow.is_active:
        raise ExecutionConflict(f"workflow '{workflow.slug}' is inactive")
    version = version or workflow.published_version
    if version is None:
        raise ExecutionConflict(f"workflow '{workflow.slug}' has no published version")
    spec = spec_for_version(version)
    coerced = coerce_inputs(spec, inputs or {})
    trigger = trigger or {"kind": "manual"}
    now = timezone.now()
    with transaction.atomic():
        execution = Execution(
            workflow=workflow,
            version=version,
            status=ExecutionStatus.RUNNING,
            trigger=trigger,
            trigger_kind=str(trigger.get("kind", "manual"))[:16],
            inputs=coerced,
            vars=spec.vars,
            labels=labels or {},
            nodes=states_to_json(initial_states(spec)),
            rerun_of=rerun_of,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            started_at=now,
            deadline_at=now + timedelta(seconds=spec.timeout) if spec.timeout else None,
        )
        execution.save(force_insert=True)
        recorder = EventRecorder(execution.pk, now)
        recorder.add(
            "execution.created",
            f"execution of {workflow.slug} v{version.number} started by {trigger.get('kind')}",
            data={"trigger": trigger, "version": version.number},
        )
        Advancer(execution, spec, recorder).advance()
    return execution


def claim_job(agent, job_id) -> Job:
    """Atomically hand an unclaimed job to `agent` with a fresh lease; exactly one claim wins."""
    now = timezone.now()
    lease = uuid.uuid4()
    claimed = (
        Job.objects.filter(pk=job_id, status__in=JOB_UNCLAIMED, queue__in=agent.queues)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .update(
            status=JobStatus.RUNNING,
            agent=agent,
            lease=lease,
            started_at=now,
            dispatched_at=Coalesce("dispatched_at", now),
        )
    )
    job = Job.objects.select_related("execution__workflow").filter(pk=job_id).first()
    if job is None:
        raise JobNotFound(job_id)
    if not claimed:
        if job.queue not in agent.queues:
            raise ExecutionConflict(f"job {job_id} is for queue {job.queue}, not this agent's")
        if job.status in JOB_UNCLAIMED:
            raise ExecutionConflict(f"job {job_id} is not due before {job.not_before}")
        raise ExecutionConflict(f"job {job_id} is already {job.status}")
    recorder = EventRecorder(job.execution_id, now)
    recorder.add(
        "job.claimed",
        f"job for '{job.node_id}' (attempt {job.attempt}) claimed by {agent.name}",
        node_id=job.node_id,
        job_id=job.pk,
        data={"agent": agent.name},
    )
    recorder.flush()
    return job


def job_spec(job: Job) -> dict[str, Any]:
    """What a winning claim receives: everything the agent needs to run the job, nothing more."""
    return {
        "job_id": str(job.pk),
        "lease": str(job.lease),
        "execution_id": str(job.execution_id),
        "node_id": job.node_id,
        "attempt": job.attempt,
        "workflow": job.execution.workflow.slug,
        "action": job.action,
        "params": job.params,
        "timeout_s": job.timeout_s,
        "env": {},
    }


def retry_delay(spec_node: NodeSpec, attempt: int) -> float:
    policy = spec_node.retries
    delay = policy.delay * (policy.backoff ** (attempt - 1))
    return min(delay, policy.max_delay) if policy.max_delay else delay


def settle_job(execution: Execution, job: Job, recorder: EventRecorder) -> None:
    """Advance the graph after `job` reached a terminal state (retry, follow edges, finish)."""
    if execution.is_terminal:
        return
    spec = spec_for_version(execution.version)
    node = spec.nodes[job.node_id]
    advancer = Advancer(execution, spec, recorder)
    if job.status == JobStatus.COMPLETED:
        advancer.resolve(job.node_id, "success")
        advancer.outputs_cache = {job.node_id: job_output(job)}
    elif job.status == JobStatus.CANCELLED:
        advancer.resolve(job.node_id, "error", "cancelled")
    else:
        reason = job.error or job.status
        if node.retries and job.attempt <= node.retries.max:
            delay = retry_delay(node, job.attempt)
            not_before = recorder.now + timedelta(seconds=delay) if delay > 0 else None
            recorder.add(
                "retry.scheduled",
                f"node '{job.node_id}' attempt {job.attempt} {job.status} ({reason}); "
                f"retrying in {delay:g}s",
                level="warning",
                node_id=job.node_id,
                job_id=job.pk,
                data={"attempt": job.attempt + 1, "delay_s": delay},
            )
            advancer.queue_job(node, job.attempt + 1, not_before)
            advancer.save()
            return
        advancer.resolve(job.node_id, "error", reason)
        recorder.add(
            "node.failed",
            f"node '{job.node_id}' failed: {reason}",
            level="error",
            node_id=job.node_id,
            job_id=job.pk,
        )
    advancer.advance()


def report_job_result(agent, job_id, report: JobReport) -> tuple[Job, bool]:
    """Apply an agent's final report. Returns (job, applied); a repeat of an applied report is a
    no-op, a report from a stale or superseded lease raises ExecutionConflict (fencing)."""
    status = RESULT_STATUSES.get(report.status)
    if status is None:
        raise ValueError(report.status)
    head = Job.objects.filter(pk=job_id).values("execution_id").first()
    if head is None:
        raise JobNotFound(job_id)
    now = timezone.now()
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",))
            .select_related("workflow", "version")
            .get(pk=head["execution_id"])
        )
        updated = Job.objects.filter(
            pk=job_id, lease=report.lease, status=JobStatus.RUNNING, agent=agent
        ).update(
            status=status,
            exit_code=report.exit_code,
            stdout=report.stdout[-settings.SWITCHYARD_MAX_OUTPUT_BYTES :],
            stderr=report.stderr[-settings.SWITCHYARD_MAX_OUTPUT_BYTES :],
            outputs=report.outputs,
            http=report.http,
            duration_ms=report.duration_ms,
            error=report.error,
            finished_at=report.finished_at or now,
        )
        job = Job.objects.get(pk=job_id)
        if not updated:
            if job.lease == report.lease and job.status == status:
                return job, False
            if job.lease != report.lease:
                raise ExecutionConflict("lease is stale or superseded")
            raise ExecutionConflict(f"job is already {job.status}")
        recorder = EventRecorder(execution.pk, now)
        level = "info" if status == JobStatus.COMPLETED else "error"
        detail = f" ({job.error})" if job.error else ""
        recorder.add(
            "job.finished",
            f"job for '{job.node_id}' (attempt {job.attempt}) {status}{detail}",
            level=level,
            node_id=job.node_id,
            job_id=job.pk,
            data={"status": status, "exit_code": job.exit_code, "duration_ms": job.duration_ms},
        )
        settle_job(execution, job, recorder)
        recorder.flush()
    return job, True


def cancel_execution(execution_id, *, user=None) -> Execution:
    """Graceful cancel: unclaimed jobs are cancelled now, in-flight jobs finish, nothing new
    starts; the execution becomes `cancelled` at once."""
    with transaction.atomic():
        execution = (
            Execution.objects.select_for_update(of=("self",))
            .select_related("workflow", "version")
            .get(pk=execution_id)
        )
        if execution.is_terminal:
            raise ExecutionConflict(f"execution is already {execution.status}")
        recorder = EventRecorder(execution.pk)
        who = getattr(user, "username", None) or "system"
        recorder.add("execution.cancel", f"cancel requested by {who}", level="warning")
        execution.cancel_requested_at = recorder.now
        execution.save(update_fields=["cancel_requested_at"])
        advancer = Advancer(execution, spec_for_version(execution.version), recorder)
        advancer.close(ExecutionStatus.CANCELLED)
        advancer.save()
    return execution


def sweep_due_jobs(now: datetime | None = None) -> list[tuple[str, str]]:
    """Jobs to (re)publish: never-published ones, retries now due, and dispatched jobs nobody
    claimed for a long time (the broker may have lost them)."""
    now = now or timezone.now()
    pending_cutoff = now - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_PENDING_AFTER)
    dispatched_cutoff = now - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_DISPATCHED_AFTER)
    due = Job.objects.filter(
        Q(status=JobStatus.PENDING, not_before__isnull=True, queued_at__lte=pending_cutoff)
        | Q(status=JobStatus.PENDING, not_before__lte=now)
        | Q(status=JobStatus.DISPATCHED, dispatched_at__lte=dispatched_cutoff)
    ).values_list("id", "queue", "status")[:1000]
    rows = list(due)
    stale_dispatched = [job_id for job_id, _, status in rows if status == JobStatus.DISPATCHED]
    if stale_dispatched:
        Job.objects.filter(pk__in=stale_dispatched, status=JobStatus.DISPATCHED).update(
            dispatched_at=now
        )
    return [(str(job_id), queue) for job_id, queue, _ in rows]


def expire_overdue(now: datetime | None = None) -> int:
    """Time out running jobs past their deadline plus grace, and executions past theirs."""
    now = now or timezone.now()
    grace = settings.SWITCHYARD_JOB_TIMEOUT_GRACE
    overdue_jobs = [
        job
        for job in Job.objects.filter(status=JobStatus.RUNNING, timeout_s__isnull=False).only(
            "id", "started_at", "timeout_s", "execution_id"
        )[:1000]
        if job.started_at and job.started_at + timedelta(seconds=job.timeout_s + grace) < now
    ]
    count = 0
    for job in overdue_jobs:
        with transaction.atomic():
            execution = (
                Execution.objects.select_for_update(of=("self",))
                .select_related("workflow", "version")
                .get(pk=job.execution_id)
            )
            error = f"no result within {job.timeout_s:g}s (+{grace:g}s grace)"
            if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.TIMEOUT, error=error, finished_at=now
            ):
                continue
            fresh = Job.objects.get(pk=job.pk)
            recorder = EventRecorder(execution.pk, now)
            recorder.add(
                "job.timeout",
                f"job for '{fresh.node_id}' timed out: {error}",
                level="error",
                node_id=fresh.node_id,
                job_id=fresh.pk,
            )
            settle_job(execution, fresh, recorder)
            recorder.flush()
            count += 1
    overdue_executions = Execution.objects.filter(
        deadline_at__lt=now,
        status__in=[ExecutionStatus.RUNNING, ExecutionStatus.PAUSED, ExecutionStatus.PENDING],
    ).values_list("pk", flat=True)[:1000]
    for execution_id in list(overdue_executions):
        with transaction.atomic():
            execution = (
                Execution.objects.select_for_update(of=("self",))
                .select_related("workflow", "version")
                .get(pk=execution_id)
            )
            if execution.is_terminal:
                continue
            recorder = EventRecorder(execution.pk, now)
            execution.error = "execution timeout exceeded"
            advancer = Advancer(execution, spec_for_version(execution.version), recorder)
            advancer.close(ExecutionStatus.TIMED_OUT)
            advancer.save()
            count += 1
    return count
