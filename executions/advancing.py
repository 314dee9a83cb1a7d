"""Applying engine plans to executions: start, advance, settle, cancel, kill.

Every state change runs in one transaction that locks the execution row first (then job rows),
so concurrent reports for a fan-out serialise per execution and never deadlock. The graph
decisions come from the pure `orchestrator.engine.plan_execution`; this module turns them into
jobs, child executions, approval requests and timers, and records every decision in the log.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalAudit, ApprovalRequest, ApprovalStatus
from executions.commit_hooks import on_commit_robust
from executions.dispatch import publish_after_commit
from executions.hot_path import lock_execution, save_execution_states
from executions.live import publish_deleted_after_commit
from executions.models import (
    JOB_TERMINAL,
    JOB_UNCLAIMED,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
)
from executions.recorder import EventRecorder, flush_together
from executions.routing import QueueRouter
from orchestrator.copy_insert import insert_rows
from orchestrator.engine import (
    DefinitionError,
    NodeSpec,
    NodeState,
    NodeStatus,
    TemplateError,
    WorkflowSpec,
    coerce_inputs,
    contains_template,
    evaluate_expression,
    parse_duration,
    plan_execution,
    render_value,
    resolve_node,
)
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.secret_store import MASK, referenced_secrets, secret_names
from orchestrator.services import spec_for_version

NODE_REFERENCE = re.compile(r"nodes\s*(?:\.\s*|\[\s*['\"])([A-Za-z_][A-Za-z0-9_-]*)")
RESOLVED = (NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED)
ACTIVE_EXECUTION = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
MAX_CHILD_DEPTH = 10


class ExecutionConflict(Exception):
    """The execution or job is in a state that forbids the request (HTTP 409)."""


def job_output(job: Job) -> dict[str, Any]:
    """The `nodes.<id>.output` (and an assertion's `output`) a finished job exposes."""
    http = job.http or None
    json_value = http.get("json") if isinstance(http, dict) else None
    if json_value is None and isinstance(job.outputs, dict):
        json_value = job.outputs.get("json")
    return {
        "stdout": job.stdout,
        "stderr": job.stderr,
        "exit_code": job.exit_code,
        "duration_ms": job.duration_ms,
        "outputs": job.outputs,
        "http": http,
        "json": json_value,
        "error": job.error,
        "attempt": job.attempt,
        "status": job.status,
    }


@dataclass(frozen=True)
class Handover:
    """An agent offering the slot its finished job frees, and the lease its next job gets."""

    agent: Any
    lease: uuid.UUID


def record_claim(recorder: EventRecorder, job: Job, agent, *, handoff: bool = False) -> None:
    """The `job.claimed` log event, for a claim and for a job handed over with a report."""
    how = " (handed over with its last report)" if handoff else ""
    recorder.add(
        "job.claimed",
        f"job for '{job.node_id}' (attempt {job.attempt}) claimed by {agent.name}{how}",
        node_id=job.node_id,
        job_id=job.pk,
        data={"agent": agent.name, "handoff": True} if handoff else {"agent": agent.name},
    )


@dataclass
class DeferredWrites:
    """What advances write: a run's state, the jobs it made ready with their doorbells, its log
    events. The advances of several runs in one transaction share one, written at its end in a
    statement each (see `executions.report_batch`); an advance given none writes its own at
    once."""

    executions: dict[uuid.UUID, Execution] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    doorbells: list[tuple[str, str]] = field(default_factory=list)
    recorders: list[EventRecorder] = field(default_factory=list)

    def recorder(self, execution_id) -> EventRecorder:
        """A recorder whose events `write` inserts."""
        return self.adopt(EventRecorder(execution_id))

    def adopt(self, recorder: EventRecorder) -> EventRecorder:
        """Have `write` insert `recorder`'s events (an advance given these writes does not
        flush its recorder itself)."""
        if not any(known is recorder for known in self.recorders):
            self.recorders.append(recorder)
        return recorder

    def write(self) -> None:
        self.write_rows()
        self.write_events()

    def write_rows(self) -> None:
        """The runs' states and the jobs they made ready (with their doorbells after commit)."""
        save_execution_states(list(self.executions.values()))
        if self.jobs:
            insert_rows(Job, self.jobs)
        publish_after_commit(self.doorbells)

    def write_events(self) -> None:
        """The log events of every recorder, in one statement."""
        flush_together(self.recorders)


class Advancer:
    """Applies engine plans to one locked execution inside the caller's transaction."""

    def __init__(
        self,
        execution: Execution,
        spec: WorkflowSpec,
        recorder: EventRecorder,
        *,
        handoffs: Sequence[Handover] = (),
        writes: DeferredWrites | None = None,
        router: QueueRouter | None = None,
    ) -> None:
        """With `writes`, `save` leaves its writes there for the caller to make; a `router`
        shared by the advances of one transaction looks online agents up once for them all."""
        self.writes = writes
        self.execution = execution
        self.handoffs = list(handoffs)
        self.handed_off: dict[uuid.UUID, Job] = {}
        self.spec = spec
        self.recorder = recorder
        self.now = recorder.now
        self.extras: dict[str, dict[str, Any]] = {}
        self.states: dict[str, NodeState] = {}
        for node_id, data in execution.nodes.items():
            self.states[node_id] = NodeState(
                status=NodeStatus(data["status"]),
                taken=frozenset(data.get("taken", ())),
                reason=data.get("reason", ""),
            )
            extra = {k: v for k, v in data.items() if k not in ("status", "taken", "reason")}
            if extra:
                self.extras[node_id] = extra
        self.new_jobs: list[Job] = []
        self.outputs_cache: dict[str, dict[str, Any]] | None = None
        self.router = router or QueueRouter(recorder)
        self.after_commit: list = []
        self.secret_names: set[str] | None = None

    # -- template context -------------------------------------------------------------
    def node_outputs(self, node_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Outputs of the referenced nodes: the latest finished job per action node (one
        query), or the stored output of a workflow/approval/condition node."""
        if self.outputs_cache is None:
            self.outputs_cache = {}
        for node_id in node_ids:
            if node_id not in self.outputs_cache and "output" in self.extras.get(node_id, {}):
                self.outputs_cache[node_id] = self.extras[node_id]["output"]
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

    def masked_secrets(self) -> dict[str, str]:
        """`secrets.<name>` while planning: every visible name, every value `***`."""
        if self.secret_names is None:
            self.secret_names = secret_names(self.execution.workflow)
        return dict.fromkeys(self.secret_names, MASK)

    def context_for(self, text: str) -> dict[str, Any]:
        extra = {"secrets": self.masked_secrets()} if "secrets" in text else {}
        referenced = set(NODE_REFERENCE.findall(text)) & self.spec.nodes.keys()
        outputs = self.node_outputs(referenced) if referenced else {}
        nodes = {}
        for node_id in self.spec.nodes:
            state = self.states.get(node_id)
            entry: dict[str, Any] = {"status": str(state.status) if state else "pending"}
            if node_id in outputs:
                entry["output"] = outputs[node_id]
                entry["outputs"] = (outputs[node_id] or {}).get("outputs", {})
            nodes[node_id] = entry
        return self.base_context() | {"nodes": nodes} | extra

    def context(self, node: NodeSpec) -> dict[str, Any]:
        return self.context_for(repr(node.raw))

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
                "base_url": settings.SWITCHYARD_BASE_URL,
                "started_at": execution.started_at.isoformat() if execution.started_at else None,
                "workflow": execution.workflow.slug,
            },
        }

    # -- node transitions ---------------------------------------------------------------
    def resolve(
        self, node_id: str, outcome: str, reason: str = "", output: dict | None = None
    ) -> None:
        self.states[node_id] = resolve_node(self.spec, node_id, outcome, reason)
        if output is not None:
            self.extras.setdefault(node_id, {})["output"] = output
            if self.outputs_cache is not None:
                self.outputs_cache[node_id] = output

    def fail_node(self, node_id: str, reason: str, kind: str = "node.failed") -> None:
        self.resolve(node_id, "error", reason)
        self.recorder.add(
            kind, f"node '{node_id}' failed: {reason}", level="error", node_id=node_id
        )

    def advance(self) -> None:
        """Plan, start what is ready, and repeat while nodes resolve inline."""
        if self.execution.is_terminal:
            self.save()
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
                if self.states[node_id].status in RESOLVED:
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
        starter = {
            "action": self.start_action,
            "condition": self.start_condition,
            "wait": self.start_wait,
            "workflow": self.start_child,
            "approval": self.start_approval,
        }.get(node.type)
        if starter is None:
            self.fail_node(node.id, f"node type '{node.type}' cannot run here")
            return
        starter(node)

    def start_action(self, node: NodeSpec) -> None:
        self.queue_job(node, attempt=1)

    def start_condition(self, node: NodeSpec) -> None:
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
        self.resolve(node.id, "true" if value else "false", output={"value": value})

    def start_wait(self, node: NodeSpec) -> None:
        """A wait holds no agent slot: the control plane's timer resumes it."""
        resume_at = self.now + timedelta(seconds=node.duration or 0)
        if node.duration == 0:
            self.resolve(node.id, "success", output={"waited_s": 0})
            return
        self.states[node.id] = NodeState(NodeStatus.WAITING)
        self.extras.setdefault(node.id, {})["resume_at"] = resume_at.isoformat()
        self.recorder.add(
            "wait.started",
            f"node '{node.id}' waits {node.duration:g}s until {resume_at.isoformat()}",
            node_id=node.id,
            data={"resume_at": resume_at.isoformat()},
        )

    def start_child(self, node: NodeSpec) -> None:
        """Start a child execution of another published workflow and wait for it."""
        slug = node.raw.get("workflow")
        depth = self.execution.trigger.get("depth", 0) + 1
        try:
            inputs = render_value(node.params, self.context(node), "with")
        except TemplateError as error:
            self.fail_node(node.id, str(error), kind="template.error")
            return
        workflow = Workflow.objects.filter(slug=slug).select_related("published_version").first()
        if workflow is None:
            self.fail_node(node.id, f"workflow '{slug}' does not exist")
            return
        if depth > MAX_CHILD_DEPTH:
            self.fail_node(node.id, f"sub-workflows nested deeper than {MAX_CHILD_DEPTH}")
            return
        trigger = {
            "kind": "parent",
            "execution": str(self.execution.pk),
            "workflow": self.execution.workflow.slug,
            "node": node.id,
            "depth": depth,
        }
        try:
            with transaction.atomic():
                child = start_execution(
                    workflow,
                    inputs=inputs,
                    trigger=trigger,
                    parent=self.execution,
                    parent_node_id=node.id,
                    deadline_s=node.timeout,
                )
        except (ExecutionConflict, DefinitionError) as error:
            self.fail_node(node.id, f"cannot start workflow '{slug}': {error}")
            return
        self.states[node.id] = NodeState(NodeStatus.RUNNING)
        self.extras.setdefault(node.id, {})["child"] = str(child.pk)
        self.recorder.add(
            "workflow.started",
            f"node '{node.id}' started child execution {child.pk} of '{slug}'",
            node_id=node.id,
            data={"child": str(child.pk), "workflow": slug},
        )
        if child.is_terminal:
            self.after_commit.append(partial(settle_child, child.pk))

    def start_approval(self, node: NodeSpec) -> None:
        """Pause on a person's decision; the request expires after the node's timeout, may
        escalate to a second group first, and its approvers are notified after commit."""
        raw = node.raw
        try:
            context = self.context(node)
            message = str(render_value(raw.get("message", ""), context, "message"))
            extra = render_value(raw.get("context") or {}, context, "context")
        except TemplateError as error:
            self.fail_node(node.id, str(error), kind="template.error")
            return
        expires_at = self.now + timedelta(seconds=node.timeout) if node.timeout else None
        escalate = raw.get("escalate") or {}
        escalate_at = (
            self.now + timedelta(seconds=parse_duration(escalate["after"])) if escalate else None
        )
        request = ApprovalRequest.objects.create(
            execution=self.execution,
            node_id=node.id,
            message=message,
            approvers=raw.get("approvers") or {},
            quorum=int(raw.get("quorum") or 1),
            allow_self_approval=bool(raw.get("allow_self_approval", False)),
            expires_at=expires_at,
            escalate_at=escalate_at,
            escalate_to=escalate.get("to") or {},
            context=extra if isinstance(extra, dict) else {"context": extra},
            notify=raw.get("notify") or {},
        )
        ApprovalAudit.objects.create(request=request, action="requested", note=message)
        self.states[node.id] = NodeState(NodeStatus.WAITING)
        self.extras.setdefault(node.id, {})["approval"] = request.pk
        expiry = f", expires {expires_at.isoformat()}" if expires_at else ""
        self.recorder.add(
            "approval.requested",
            f"node '{node.id}' waits for approval{expiry}: {message}",
            node_id=node.id,
            data={"approval": request.pk, "quorum": request.quorum},
        )
        self.after_commit.append(partial(enqueue_notification, request.pk, "Approval needed"))

    def secrets_used(self, node: NodeSpec, params: dict[str, Any]) -> list[str]:
        """Secrets the job needs at claim time: those its templates name, and its connection."""
        names = referenced_secrets(repr(node.params))
        connection = params.get("connection") if isinstance(params, dict) else None
        if isinstance(connection, str) and connection:
            names.add(connection)
        if not names:
            return []
        return sorted(names & set(self.masked_secrets()))

    def queue_job(self, node: NodeSpec, attempt: int, not_before: datetime | None = None) -> None:
        try:
            # Most steps are plain: building their context (every node's state) would cost a
            # wide fan-out time quadratic in its width.
            templated = contains_template((node.params, node.pool, node.agent))
            context = self.context(node) if templated else {}
            params = render_value(node.params, context, "with")
            pool = render_value(node.pool, context, "pool") if node.pool else None
            agent = render_value(node.agent, context, "agent") if node.agent else None
        except TemplateError as error:
            self.fail_node(node.id, str(error), kind="template.error")
            return
        connection = params.get("connection") if isinstance(params, dict) else None
        if connection and connection not in self.masked_secrets():
            self.fail_node(node.id, f"with.connection: no secret named '{connection}'")
            return
        route = self.router.route(
            pool=str(pool or settings.SWITCHYARD_DEFAULT_POOL) if not agent else "",
            agent=str(agent) if agent else "",
            labels=node.labels,
        )
        job = Job(
            id=uuid.uuid4(),
            execution_id=self.execution.pk,
            node_id=node.id,
            action=node.action or "",
            attempt=attempt,
            pool=route.pool,
            queue=route.queue,
            labels=node.labels,
            params=params,
            secrets=self.secrets_used(node, params),
            timeout_s=node.timeout,
            not_before=not_before,
            wait_reason=route.wait_reason,
        )
        self.new_jobs.append(job)
        self.states[node.id] = NodeState(NodeStatus.RUNNING)
        when = f" not before {not_before.isoformat()}" if not_before else ""
        self.recorder.add(
            "job.queued",
            f"job for '{node.id}' (attempt {attempt}) queued on {route.queue or 'no queue'}{when}",
            node_id=node.id,
            job_id=job.id,
            data={"queue": route.queue, "attempt": attempt},
        )
        if params != node.params:
            self.recorder.add(
                "template.resolved",
                f"templates of '{node.id}' resolved",
                level="debug",
                node_id=node.id,
                job_id=job.id,
                data={"params": params},
            )
        if route.wait_reason:
            self.recorder.add(
                "job.waiting",
                f"job for '{node.id}' waits: {route.wait_reason}",
                level="warning",
                node_id=node.id,
                job_id=job.id,
            )

    # -- finishing ----------------------------------------------------------------------
    def finish(self, outcome: str, failed_nodes: list[str]) -> None:
        execution = self.execution
        if outcome == "completed":
            try:
                outputs = self.spec.outputs
                context = self.context_for(repr(outputs))
                execution.outputs = render_value(outputs, context, "outputs")
                status = ExecutionStatus.COMPLETED
            except TemplateError as error:
                status = ExecutionStatus.FAILED
                execution.error = f"outputs: {error}"
        else:
            status = ExecutionStatus.FAILED
            reasons = [f"node '{n}' failed: {self.states[n].reason}" for n in failed_nodes]
            execution.error = "; ".join(reasons) or "failed"
        self.close(status)

    def close(self, status: str, reason: str = "") -> None:
        """Mark the execution terminal: cancel work that has not started, cancel pending
        approvals and child executions, skip nodes that never ran."""
        execution = self.execution
        execution.status = status
        execution.finished_at = self.now
        execution.next_timer_at = None
        why = reason or f"execution {status}"
        # Only a running node has jobs: a run whose every node settled (a completed one) has
        # none to cancel or to read, and spares both statements.
        running = any(state.status == NodeStatus.RUNNING for state in self.states.values())
        cancelled = self.cancel_unclaimed_jobs(why) if running else 0
        pending = (
            list(
                ApprovalRequest.objects.filter(
                    execution_id=execution.pk, status=ApprovalStatus.PENDING
                ).values_list("pk", flat=True)
            )
            if any(node.type == "approval" for node in self.spec.nodes.values())
            else []  # only approval nodes make requests
        )
        if pending:
            ApprovalRequest.objects.filter(pk__in=pending).update(
                status=ApprovalStatus.CANCELLED, note=why, decided_at=self.now
            )
            ApprovalAudit.objects.bulk_create(
                [ApprovalAudit(request_id=pk, action="cancelled", note=why) for pk in pending]
            )
        in_flight = (
            set(
                Job.objects.filter(execution_id=execution.pk, status=JobStatus.RUNNING).values_list(
                    "node_id", flat=True
                )
            )
            if running
            else set()
        )
        for node_id, state in list(self.states.items()):
            has_child = "child" in self.extras.get(node_id, {})
            if state.status == NodeStatus.PENDING or (
                state.status == NodeStatus.RUNNING and not has_child and node_id not in in_flight
            ):
                self.states[node_id] = NodeState(NodeStatus.SKIPPED, reason=why)
            elif state.status == NodeStatus.WAITING:
                self.states[node_id] = NodeState(NodeStatus.FAILED, reason=why)
            elif state.status == NodeStatus.RUNNING and "child" in self.extras.get(node_id, {}):
                self.after_commit.append(
                    partial(cancel_child, self.extras[node_id]["child"], f"parent {status}")
                )
        level = "info" if status == ExecutionStatus.COMPLETED else "error"
        message = f"execution {status}" + (f": {execution.error}" if execution.error else "")
        self.recorder.add(
            "execution.finished",
            message,
            level=level,
            data={"status": status, "cancelled_jobs": cancelled},
        )
        if execution.parent_id:
            self.after_commit.append(partial(settle_child, execution.pk))

    def cancel_unclaimed_jobs(self, reason: str) -> int:
        for job in self.new_jobs:
            if job.status == JobStatus.PENDING:
                job.status = JobStatus.CANCELLED
                job.error = reason
                job.error_kind = "cancelled"
                job.finished_at = self.now
        existing = Job.objects.filter(
            execution_id=self.execution.pk, status__in=JOB_UNCLAIMED
        ).update(
            status=JobStatus.CANCELLED, error=reason, error_kind="cancelled", finished_at=self.now
        )
        return existing + len(self.new_jobs)

    def next_timer(self) -> datetime | None:
        due = [
            datetime.fromisoformat(extra["resume_at"])
            for node_id, extra in self.extras.items()
            if "resume_at" in extra and self.states[node_id].status == NodeStatus.WAITING
        ]
        return min(due) if due else None

    def save(self) -> None:
        execution = self.execution
        nodes = {}
        for node_id, state in self.states.items():
            entry = {"status": str(state.status), "taken": sorted(state.taken)}
            if state.reason:
                entry["reason"] = state.reason
            nodes[node_id] = entry | self.extras.get(node_id, {})
        execution.nodes = nodes
        if not execution.is_terminal:
            execution.next_timer_at = self.next_timer()
            waiting_on_person = any(
                "approval" in self.extras.get(node_id, {}) and state.status == NodeStatus.WAITING
                for node_id, state in self.states.items()
            )
            execution.status = (
                ExecutionStatus.PAUSED if waiting_on_person else ExecutionStatus.RUNNING
            )
        writes = self.writes or DeferredWrites()
        writes.executions[execution.pk] = execution
        if self.new_jobs:
            self.hand_off()
            writes.jobs += self.new_jobs
            writes.doorbells += [
                (str(job.id), job.queue)
                for job in self.new_jobs
                if job.status == JobStatus.PENDING and job.not_before is None and job.queue
            ]
            self.new_jobs = []
        writes.adopt(self.recorder)
        if self.writes is None:
            writes.write()
        for callback in self.after_commit:
            on_commit_robust(callback)
        self.after_commit = []

    def hand_off(self) -> None:
        """Claim new jobs for the agents whose reports made them ready (each offered the slot
        its finished job frees), in this transaction: those jobs are never published, so no
        other agent sees them. One job per offer, in order; `handed_off` maps lease -> job."""
        offers = [h for h in self.handoffs if h.lease not in self.handed_off]
        for job in self.new_jobs:
            if not offers:
                return
            if job.status != JobStatus.PENDING or job.not_before is not None:
                continue
            offer = next((h for h in offers if job.queue in h.agent.queues), None)
            if offer is None:
                continue
            offers.remove(offer)
            job.status = JobStatus.RUNNING
            job.agent = offer.agent
            job.lease = offer.lease
            job.started_at = job.dispatched_at = timezone.now()
            job.wait_reason = ""
            self.handed_off[offer.lease] = job
            record_claim(self.recorder, job, offer.agent, handoff=True)


def version_to_run(workflow: Workflow, version: WorkflowVersion | None) -> WorkflowVersion:
    """`version`, or the published one; ExecutionConflict when the workflow cannot run."""
    if not workflow.is_active:
        raise ExecutionConflict(f"workflow '{workflow.slug}' is inactive")
    version = version or workflow.published_version
    if version is None:
        raise ExecutionConflict(f"workflow '{workflow.slug}' has no published version")
    return version


def new_execution(
    workflow: Workflow,
    version: WorkflowVersion,
    spec: WorkflowSpec,
    now: datetime,
    *,
    inputs: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    trigger: dict[str, Any],
    user=None,
    rerun_of: Execution | None = None,
    parent: Execution | None = None,
    parent_node_id: str = "",
    deadline_s: float | None = None,
    initial_nodes: dict[str, dict[str, Any]] | None = None,
    idempotency_key: str = "",
) -> Execution:
    """An unsaved execution of `version` with its inputs coerced (DefinitionError when they
    do not fit the workflow's inputs) and every node pending (or as `initial_nodes` says)."""
    timeouts = [t for t in (spec.timeout, deadline_s) if t]
    return Execution(
        workflow=workflow,
        version=version,
        status=ExecutionStatus.RUNNING,
        trigger=trigger,
        trigger_kind=str(trigger.get("kind", "manual"))[:16],
        inputs=coerce_inputs(spec, inputs or {}),
        vars=spec.vars,
        labels=labels or {},
        nodes={
            node_id: (initial_nodes or {}).get(node_id, {"status": "pending", "taken": []})
            for node_id in spec.nodes
        },
        rerun_of=rerun_of,
        parent=parent,
        parent_node_id=parent_node_id,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        started_at=now,
        deadline_at=now + timedelta(seconds=min(timeouts)) if timeouts else None,
        idempotency_key=idempotency_key,
    )


def record_creation(recorder: EventRecorder, execution: Execution) -> None:
    trigger = execution.trigger
    recorder.add(
        "execution.created",
        f"execution of {execution.workflow.slug} v{execution.version.number} started by "
        f"{trigger.get('kind')}",
        data={"trigger": trigger, "version": execution.version.number},
    )


def start_execution(
    workflow: Workflow,
    *,
    inputs: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    trigger: dict[str, Any] | None = None,
    user=None,
    version: WorkflowVersion | None = None,
    rerun_of: Execution | None = None,
    parent: Execution | None = None,
    parent_node_id: str = "",
    deadline_s: float | None = None,
    initial_nodes: dict[str, dict[str, Any]] | None = None,
    idempotency_key: str = "",
) -> Execution:
    """Create an execution of `version` (default: the published one) and start its entry nodes.

    With an `idempotency_key`, a second start with the same key for the same workflow raises
    IntegrityError (unique constraint) and creates nothing."""
    version = version_to_run(workflow, version)
    spec = spec_for_version(version)
    now = timezone.now()
    execution = new_execution(
        workflow,
        version,
        spec,
        now,
        inputs=inputs,
        labels=labels,
        trigger=trigger or {"kind": "manual"},
        user=user,
        rerun_of=rerun_of,
        parent=parent,
        parent_node_id=parent_node_id,
        deadline_s=deadline_s,
        initial_nodes=initial_nodes,
        idempotency_key=idempotency_key,
    )
    with transaction.atomic():
        execution.save(force_insert=True)
        recorder = EventRecorder(execution.pk, now)
        record_creation(recorder, execution)
        Advancer(execution, spec, recorder).advance()
    return execution


def retry_delay(node: NodeSpec, attempt: int) -> float:
    return node.retries.delay_for(attempt)


def settle_job(
    execution: Execution, job: Job, recorder: EventRecorder, *, handoff_to: Handover | None = None
) -> Job | None:
    """Advance the graph after `job` reached a terminal state (retry, follow edges, finish).
    After the execution has ended, an in-flight job's result is still recorded on its node.

    With `handoff_to`, one job made ready here is claimed for that agent and
    returned (see `Advancer.hand_off`)."""
    offers = [handoff_to] if handoff_to is not None else []
    handed = settle_jobs(execution, [job], recorder, handoffs=offers)
    return handed.get(handoff_to.lease) if handoff_to is not None else None


SKIP, SAVE, ADVANCE = 0, 1, 2


def settle_jobs(
    execution: Execution,
    jobs: Sequence[Job],
    recorder: EventRecorder,
    *,
    handoffs: Sequence[Handover] = (),
    writes: DeferredWrites | None = None,
) -> dict[uuid.UUID, Job]:
    """`settle_job` for several jobs of one locked execution at once: every node is resolved
    (or its retry queued) first, then the graph advances once and is saved once (into `writes`
    when given). Returns the jobs handed over, by the lease of the offer they went to."""
    spec = spec_for_version(execution.version)
    advancer = Advancer(execution, spec, recorder, handoffs=handoffs, writes=writes)
    needed = max((settle_one(advancer, job) for job in jobs), default=SKIP)
    if needed == ADVANCE:
        advancer.advance()
    elif needed == SAVE:
        advancer.save()
    return advancer.handed_off


def settle_one(advancer: Advancer, job: Job) -> int:
    """Resolve `job`'s node (or queue its retry) on `advancer`; returns what the execution then
    needs: nothing (`SKIP`, the node was not waiting for this job), a save, or an advance."""
    execution, recorder = advancer.execution, advancer.recorder
    node = advancer.spec.nodes[job.node_id]
    if advancer.states.get(job.node_id, NodeState(NodeStatus.PENDING)).status != (
        NodeStatus.RUNNING
    ):
        return SKIP
    if execution.is_terminal:
        outcome = "success" if job.status == JobStatus.COMPLETED else "error"
        advancer.resolve(job.node_id, outcome, "" if outcome == "success" else job.error)
        return SAVE
    if job.status == JobStatus.COMPLETED:
        advancer.outputs_cache = (advancer.outputs_cache or {}) | {job.node_id: job_output(job)}
        advancer.resolve(job.node_id, "success")
    elif job.status == JobStatus.CANCELLED:
        advancer.resolve(job.node_id, "error", job.error or "cancelled")
    else:
        reason = job.error or job.status
        if node.retries and job.attempt <= node.retries.max:
            delay = retry_delay(node, job.attempt)
            not_before = recorder.now + timedelta(seconds=delay) if delay > 0 else None
            recorder.add(
                "retry.scheduled",
                f"node '{job.node_id}' attempt {job.attempt} {job.status} ({reason}); "
                f"attempt {job.attempt + 1} in {delay:g}s",
                level="warning",
                node_id=job.node_id,
                job_id=job.pk,
                data={"attempt": job.attempt + 1, "delay_s": delay},
            )
            advancer.queue_job(node, job.attempt + 1, not_before)
            return SAVE
        advancer.resolve(job.node_id, "error", reason)
        recorder.add(
            "node.failed",
            f"node '{job.node_id}' failed: {reason}",
            level="error",
            node_id=job.node_id,
            job_id=job.pk,
        )
    return ADVANCE


def settle_child(child_id) -> None:
    """A child execution ended: resolve its parent's workflow node and advance the parent."""
    child = (
        Execution.objects.filter(pk=child_id)
        .only("id", "parent_id", "parent_node_id", "status", "outputs", "error")
        .first()
    )
    if child is None or not child.parent_id or not child.is_terminal:
        return
    with transaction.atomic():
        parent = lock_execution(child.parent_id)
        if parent.is_terminal:
            return
        spec = spec_for_version(parent.version)
        recorder = EventRecorder(parent.pk)
        advancer = Advancer(parent, spec, recorder)
        node_id = child.parent_node_id
        extra = advancer.extras.get(node_id, {})
        if extra.get("child") != str(child.pk) or advancer.states[node_id].status != (
            NodeStatus.RUNNING
        ):
            return
        output = {
            "execution_id": str(child.pk),
            "status": child.status,
            "outputs": child.outputs,
            "error": child.error,
        }
        if child.status == ExecutionStatus.COMPLETED:
            advancer.resolve(node_id, "success", output=output)
            recorder.add(
                "workflow.finished",
                f"child execution {child.pk} of node '{node_id}' completed",
                node_id=node_id,
                data={"child": str(child.pk), "outputs": child.outputs},
            )
        else:
            reason = f"child execution {child.status}" + (f": {child.error}" if child.error else "")
            advancer.resolve(node_id, "error", reason, output=output)
            recorder.add(
                "workflow.finished",
                f"node '{node_id}' failed: {reason}",
                level="error",
                node_id=node_id,
                data={"child": str(child.pk)},
            )
        advancer.advance()


def cancel_child(child_id, reason: str) -> None:
    with contextlib.suppress(ExecutionConflict, Execution.DoesNotExist):
        cancel_execution(child_id, reason=reason)


def resume_due_waits(execution_id, now: datetime) -> bool:
    """Resolve the `wait` nodes of one execution whose time has come; advance it."""
    with transaction.atomic():
        execution = lock_execution(execution_id)
        if execution.is_terminal:
            return False
        recorder = EventRecorder(execution.pk, now)
        advancer = Advancer(execution, spec_for_version(execution.version), recorder)
        resumed = False
        for node_id, extra in list(advancer.extras.items()):
            resume_at = extra.get("resume_at")
            if (
                resume_at
                and advancer.states[node_id].status == NodeStatus.WAITING
                and datetime.fromisoformat(resume_at) <= now
            ):
                waited = extra.pop("resume_at")
                advancer.resolve(node_id, "success", output={"resumed_at": now.isoformat()})
                recorder.add(
                    "wait.finished",
                    f"node '{node_id}' resumed (was due {waited})",
                    node_id=node_id,
                )
                resumed = True
        advancer.advance()
        return resumed


def cancel_execution(execution_id, *, user=None, reason: str = "", kill: bool = False):
    """Graceful cancel: unclaimed jobs are cancelled now, pending approvals are cancelled, in-flight
    jobs finish, nothing new starts; the execution becomes `cancelled` at once. With `kill`,
    in-flight jobs are also terminated on their agents."""
    with transaction.atomic():
        execution = lock_execution(execution_id)
        if execution.is_terminal:
            raise ExecutionConflict(f"execution is already {execution.status}")
        recorder = EventRecorder(execution.pk)
        who = getattr(user, "username", None) or reason or "system"
        verb = "kill" if kill else "cancel"
        recorder.add(f"execution.{verb}", f"{verb} requested by {who}", level="warning")
        Execution.objects.filter(pk=execution.pk).update(cancel_requested_at=recorder.now)
        advancer = Advancer(execution, spec_for_version(execution.version), recorder)
        if kill:
            killed = Job.objects.filter(execution_id=execution.pk, status=JobStatus.RUNNING).update(
                kill_requested_at=recorder.now
            )
            if killed:
                recorder.add(
                    "job.kill",
                    f"{killed} running job(s) will be terminated on their agents",
                    level="warning",
                )
                advancer.after_commit.append(ring_agents)
        advancer.close(ExecutionStatus.CANCELLED, reason=f"{verb}led by {who}")
        advancer.save()
    return execution


def ring_agents() -> None:
    """Ask every agent to heartbeat now, so kill requests reach them within a second or two.
    The broadcast carries no instruction; agents learn what to kill from the control plane."""
    from orchestrator.celery_app import app

    with contextlib.suppress(Exception):  # the next regular heartbeat delivers the kill anyway
        app.control.broadcast("switchyard_heartbeat_now")


def pending_jobs_waiting_for_agents() -> list[Job]:
    return list(
        Job.objects.filter(status=JobStatus.PENDING, queue="")
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=timezone.now()))
        .only("id", "queue", "pool", "labels", "execution_id", "node_id", "wait_reason")[:500]
    )


def rerun_execution(original: Execution, *, user=None) -> Execution:
    """Run the same version with the same inputs and labels again, linked to the original."""
    trigger = {
        "kind": "rerun",
        "user": getattr(user, "username", None),
        "of": str(original.pk),
        "original_trigger": original.trigger,
    }
    return start_execution(
        original.workflow,
        inputs=original.inputs,
        labels=original.labels,
        trigger=trigger,
        user=user,
        version=original.version,
        rerun_of=original,
    )


def descendants_of(spec: WorkflowSpec, node_id: str) -> set[str]:
    found: set[str] = set()
    stack = [node_id]
    while stack:
        current = stack.pop()
        for targets in spec.nodes[current].on.values():
            for target in targets:
                if target not in found:
                    found.add(target)
                    stack.append(target)
    return found


def replay_execution(original: Execution, from_node: str, *, user=None) -> Execution:
    """Start a new run of the same version that keeps the results of every node outside
    `from_node` and its descendants (their outputs stay readable by templates) and runs
    `from_node` and everything after it again."""
    if not original.is_terminal:
        raise ExecutionConflict("only a finished execution can be replayed")
    spec = spec_for_version(original.version)
    if from_node not in spec.nodes:
        raise KeyError(from_node)
    rerun = {from_node} | descendants_of(spec, from_node)
    outputs = {
        job.node_id: job_output(job)
        for job in Job.objects.filter(execution=original, status__in=JOB_TERMINAL).order_by(
            "attempt"
        )
    }
    kept: dict[str, dict[str, Any]] = {}
    for node_id, entry in original.nodes.items():
        if node_id in rerun or node_id not in spec.nodes:
            continue
        node = spec.nodes[node_id]
        handled_failure = entry["status"] == "failed" and "error" in node.on
        if entry["status"] in ("completed", "skipped") or handled_failure:
            kept[node_id] = {
                key: value for key, value in entry.items() if key in ("status", "taken", "reason")
            } | {"replayed": True}
            output = entry.get("output") or outputs.get(node_id)
            if output is not None:
                kept[node_id]["output"] = output
    trigger = {
        "kind": "replay",
        "user": getattr(user, "username", None),
        "of": str(original.pk),
        "from_node": from_node,
    }
    return start_execution(
        original.workflow,
        inputs=original.inputs,
        labels=original.labels,
        trigger=trigger,
        user=user,
        version=original.version,
        rerun_of=original,
        initial_nodes=kept,
    )


def delete_execution(execution: Execution) -> None:
    if not execution.is_terminal:
        raise ExecutionConflict(f"execution is {execution.status}; cancel it before deleting")
    execution_id = execution.pk
    with transaction.atomic():
        execution.delete()
        publish_deleted_after_commit(execution_id)


def enqueue_notification(request_id: int, reason: str, escalation: bool = False) -> None:
    """Hand approval notifications to the control worker (never block a request on SMTP)."""
    from approvals.tasks import notify_approvers

    with contextlib.suppress(Exception):  # the request stays visible in the UI and API
        notify_approvers.apply_async(args=[request_id, reason, escalation], queue="control")
