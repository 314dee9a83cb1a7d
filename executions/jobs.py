"""The control plane's side of the agent protocol: claim, live output, final report, kill list.

A claim is one conditional UPDATE, so exactly one agent wins a job. Every later call carries the
lease it got, and is a compare-and-set on (job, lease, state): a stale or superseded lease gets
a conflict (fencing), and repeating an already applied report is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext import parse as parse_jsonpath

from executions.advancing import (
    Advancer,
    ExecutionConflict,
    job_output,
    lock_execution,
    record_claim,
    settle_job,
)
from executions.hot_path import claimed_jobs, due_by, mark_claimed
from executions.live import publish_output_after_commit
from executions.models import JOB_UNCLAIMED, Execution, Job, JobOutputChunk, JobStatus
from executions.recorder import EventRecorder
from orchestrator.engine import NodeSpec, TemplateError, evaluate_expression, render_value
from orchestrator.models import SecretUsage
from orchestrator.secret_box import SecretDecryptionError, decrypt
from orchestrator.secret_store import mask, masked_forms, resolve, reveal, sensitive_values
from orchestrator.services import spec_for_version

RESULT_STATUSES = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "timeout": JobStatus.TIMEOUT,
}
TRUNCATION_MARKER = "\n[switchyard: output truncated at {limit} bytes]\n"


FAILURE_PATTERNS = (
    ("assertion failed", "assertion"),
    ("outputs.", "output"),
    ("agent lost", "agent_lost"),
    ("killed by the control plane", "cancelled"),
    ("killed by", "killed"),
    ("blocked:", "network_policy"),
    ("HTTP ", "http_status"),
    ("connection refused", "connection"),
    ("DNS:", "connection"),
    ("TLS:", "connection"),
    ("authentication failed", "auth"),
    ("host key verification failed", "auth"),
    ("exit code", "exit_code"),
    ("cannot deliver secrets", "secrets"),
    ("invalid job spec", "agent"),
)


def classify_failure(status: str, error: str) -> str:
    """A short, stable category for a failed job (used by retries' logs, the UI and diagnosis)."""
    if status == JobStatus.COMPLETED:
        return ""
    if status == JobStatus.TIMEOUT:
        return "timeout"
    if status == JobStatus.CANCELLED:
        return "cancelled"
    for fragment, kind in FAILURE_PATTERNS:
        if error.startswith(fragment) or f"; {fragment}" in error:
            return kind
    return "error"


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


def claim_job(agent, job_id, *, lease: uuid.UUID | None = None) -> Job:
    """Atomically hand an unclaimed job to `agent` with a fresh lease; exactly one claim wins."""
    now = timezone.now()
    claimed = mark_claimed(
        Job.objects.filter(pk=job_id, status__in=JOB_UNCLAIMED, queue__in=agent.queues).filter(
            due_by(now)
        ),
        agent,
        lease or uuid.uuid4(),
        now,
    )
    job = claimed_jobs().filter(pk=job_id).first()
    if job is None:
        raise JobNotFound(job_id)
    if not claimed:
        if job.queue not in agent.queues:
            raise ExecutionConflict(f"job {job_id} is for queue {job.queue}, not this agent's")
        if job.status in JOB_UNCLAIMED:
            raise ExecutionConflict(f"job {job_id} is not due before {job.not_before}")
        raise ExecutionConflict(f"job {job_id} is already {job.status}")
    return announce_claim(job, agent, now)


def announce_claim(job: Job, agent, now) -> Job:
    recorder = EventRecorder(job.execution_id, now)
    record_claim(recorder, job, agent)
    recorder.flush()
    return prepare_claim(job)


def prepare_claim(job: Job) -> Job:
    """Attach what the claim response carries beyond the row: params rendered with secret
    values (never stored) and the values to mask. A job whose secrets cannot be delivered is
    failed and ExecutionConflict raised."""
    job.claim_params, job.claim_mask = job.params, []
    if job.secrets:
        try:
            job.claim_params, job.claim_mask = deliver_secrets(job)
        except (TemplateError, SecretDecryptionError) as error:
            fail_job(job.pk, f"cannot deliver secrets: {error}")
            raise ExecutionConflict(f"job {job.pk} cannot run: {error}") from error
    return job


def deliver_secrets(job: Job) -> tuple[dict[str, Any], list[str]]:
    """Render the job's params again, this time with the secret values, for the claim response
    only; record which secrets the job received."""
    execution = Execution.objects.select_related("workflow", "version").get(pk=job.execution_id)
    spec = spec_for_version(execution.version)
    node = spec.nodes[job.node_id]
    advancer = Advancer(execution, spec, EventRecorder(execution.pk))
    secrets = resolve(execution.workflow, job.secrets)
    values = {name: decrypt(secret.ciphertext) for name, secret in secrets.items()}
    missing = sorted(set(job.secrets) - values.keys())
    if missing:
        raise TemplateError(f"secret(s) {', '.join(missing)} no longer exist", "secrets")
    context = advancer.context(node) | {"secrets": values}
    params = render_value(node.params, context, "with")
    params, connection_values = merge_connection(params, values)
    SecretUsage.objects.bulk_create(
        [
            SecretUsage(secret=secret, name=name, execution_id=execution.pk, job_id=job.pk)
            for name, secret in secrets.items()
        ]
    )
    return params, [*values.values(), *connection_values]


def merge_connection(
    params: dict[str, Any], values: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """`connection: name` names a secret whose value is a JSON object of params (host, user,
    password, private_key, known_hosts...); explicit params win. Returns the merged params and
    the connection's string values (to mask)."""
    name = params.get("connection")
    if not name:
        return params, []
    try:
        bundle = json.loads(values[name])
    except (KeyError, ValueError) as error:
        raise TemplateError(
            f"connection '{name}' must be a secret holding a JSON object", "with.connection"
        ) from error
    if not isinstance(bundle, dict):
        raise TemplateError(
            f"connection '{name}' must be a secret holding a JSON object", "with.connection"
        )
    merged = {**bundle, **{k: v for k, v in params.items() if k != "connection"}}
    return merged, sensitive_values(values[name])[1:]


def secret_forms(job_secrets: list[str], execution_id) -> list[str]:
    """The masked forms of the secrets a job received (for masking what it reports)."""
    if not job_secrets:
        return []
    workflow = Execution.objects.only("workflow").get(pk=execution_id).workflow
    values = reveal(workflow, job_secrets).values()
    return masked_forms([form for value in values for form in sensitive_values(value)])


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
        "params": getattr(job, "claim_params", job.params),
        "timeout_s": job.timeout_s,
        "env": {},
        "mask": getattr(job, "claim_mask", []),
        "network_allow": list(settings.SWITCHYARD_NETWORK_ALLOW),
        "output_limit_bytes": settings.SWITCHYARD_MAX_OUTPUT_BYTES,
    }


def extract_outputs(node: NodeSpec, output: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Apply the node's `outputs: {name: "$.json.path"}` to the job's JSON (http or parse:
    json); returns the values and the problems (a path that matched nothing is a problem)."""
    values: dict[str, Any] = {}
    problems = []
    document = output.get("json")
    for name, expression in node.extract.items():
        try:
            matches = [m.value for m in parse_jsonpath(expression).find(document)]
        except (JsonPathParserError, Exception) as error:  # the parser raises several types
            problems.append(f"outputs.{name}: invalid JSONPath {expression!r}: {error}")
            continue
        if not matches:
            problems.append(f"outputs.{name}: {expression} matched nothing")
        else:
            values[name] = matches[0] if len(matches) == 1 else matches
    return values, problems


def check_assertions(
    advancer: Advancer, node: NodeSpec, output: dict[str, Any]
) -> list[dict[str, Any]]:
    """Evaluate each `assert:` expression against the job's result (and the run's context)."""
    context = advancer.context(node) | {"output": output}
    results = []
    for expression in node.assertions:
        try:
            value = evaluate_expression(expression, context)
            results.append({"expression": expression, "passed": bool(value), "value": value})
        except TemplateError as error:
            results.append({"expression": expression, "passed": False, "error": str(error)})
    return results


def json_safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return repr(value)


def apply_result_checks(advancer: Advancer, job: Job) -> None:
    """Run the node's output extraction and assertions on a completed job (the caller saves it);
    a failure turns the job `failed` (kind `assertion`) so retries and error edges apply."""
    node = advancer.spec.nodes[job.node_id]
    if job.status != JobStatus.COMPLETED or not (node.extract or node.assertions):
        return
    output = job_output(job)
    extracted, problems = extract_outputs(node, output)
    if extracted:
        job.outputs = {**job.outputs, **extracted}
        output = job_output(job)
    results = check_assertions(advancer, node, output) if node.assertions else []
    failed = [r for r in results if not r["passed"]]
    for result in results:
        verdict = "passed" if result["passed"] else "FAILED"
        detail = result.get("error") or f"value {result.get('value')!r}"
        advancer.recorder.add(
            "assertion",
            f"assertion {verdict} on '{job.node_id}': {result['expression']} ({detail})",
            level="info" if result["passed"] else "error",
            node_id=job.node_id,
            job_id=job.pk,
        )
    job.assertions = json_safe(results)
    if problems or failed:
        job.status = JobStatus.FAILED
        reasons = problems + [f"assertion failed: {r['expression']}" for r in failed]
        job.error = "; ".join(reasons)


@dataclass
class ReportOutcome:
    job: Job
    applied: bool
    next_job: Job | None = None


HANDOVER_NAMESPACE = uuid.UUID("5f0c8a53-2f4e-4c61-9d7e-6c1f5b2a9e10")


def handover_lease(report_lease: uuid.UUID) -> uuid.UUID:
    """The lease of the job handed over with a report: a function of the report's own lease,
    which only the reporting agent knows."""
    return uuid.uuid5(HANDOVER_NAMESPACE, str(report_lease))


def reported_status(job: Job, report: JobReport) -> str:
    """The status a report gives its job: what the agent says, unless a kill was requested."""
    if job.kill_requested_at is not None:
        return JobStatus.CANCELLED
    return RESULT_STATUSES[report.status]


def fence_report(agent, job: Job, report: JobReport, status: str) -> bool:
    """Whether the report applies: `False` for a repeat of an applied report (a no-op);
    ExecutionConflict for a stale or superseded lease or a job in another state."""
    if job.lease != report.lease:
        raise ExecutionConflict("lease is stale or superseded")
    if job.status != JobStatus.RUNNING or job.agent_id != agent.pk:
        if job.status in (status, JobStatus.FAILED):
            return False
        raise ExecutionConflict(f"job is already {job.status}")
    return True


def record_result(
    execution: Execution, job: Job, report: JobReport, status: str, recorder: EventRecorder
) -> None:
    """Put the report on the job (masked, tails only), check its outputs and assertions, and
    log it; the caller saves the job and settles its node."""
    forms = secret_forms(job.secrets, job.execution_id)
    limit = settings.SWITCHYARD_REPORT_TAIL_BYTES
    job.status = status
    job.exit_code = report.exit_code
    job.stdout = mask(report.stdout[-limit:], forms)
    job.stderr = mask(report.stderr[-limit:], forms)
    job.outputs = mask(report.outputs, forms)
    job.http = mask(report.http, forms)
    job.error = mask(report.error, forms)
    job.duration_ms = report.duration_ms
    job.finished_at = report.finished_at or recorder.now
    if not execution.is_terminal:
        spec = spec_for_version(execution.version)
        node = spec.nodes[job.node_id]
        if node.extract or node.assertions:
            apply_result_checks(Advancer(execution, spec, recorder), job)
    job.error_kind = classify_failure(job.status, job.error)
    level = "info" if job.status == JobStatus.COMPLETED else "error"
    detail = f" ({job.error})" if job.error else ""
    recorder.add(
        "job.finished",
        f"job for '{job.node_id}' (attempt {job.attempt}) {job.status}{detail}",
        level=level,
        node_id=job.node_id,
        job_id=job.pk,
        data={"status": job.status, "exit_code": job.exit_code, "duration_ms": job.duration_ms},
    )


@dataclass
class OutputChunk:
    seq: int
    stream: str
    data: str


def append_output(agent, job_id, lease: uuid.UUID, chunks: list[OutputChunk]) -> dict[str, Any]:
    """Store live output chunks in order, ignoring duplicates (by seq), up to the per-job cap.
    Returns `{accepted, last_seq, cancel}`; `cancel` tells the agent to kill the job now."""
    job = (
        Job.objects.filter(pk=job_id)
        .only(
            "id",
            "lease",
            "status",
            "agent_id",
            "output_bytes",
            "output_truncated",
            "kill_requested_at",
            "output_seq",
            "secrets",
            "execution_id",
        )
        .first()
    )
    if job is None:
        raise JobNotFound(job_id)
    if job.lease != lease or job.agent_id != agent.pk or job.status != JobStatus.RUNNING:
        raise ExecutionConflict("lease is stale or superseded")
    forms = secret_forms(job.secrets, job.execution_id)
    limit = settings.SWITCHYARD_MAX_OUTPUT_BYTES
    budget = max(0, limit - job.output_bytes)
    rows = []
    truncated = job.output_truncated
    for chunk in sorted(chunks, key=lambda c: c.seq):
        if truncated:
            break
        data = mask(chunk.data, forms)
        size = len(data.encode())
        if size > budget:
            data = data.encode()[:budget].decode(errors="ignore") + TRUNCATION_MARKER.format(
                limit=limit
            )
            truncated = True
        budget -= min(size, budget)
        rows.append(JobOutputChunk(job_id=job.pk, seq=chunk.seq, stream=chunk.stream, data=data))
    accepted = 0
    if rows:
        existing = set(
            JobOutputChunk.objects.filter(job_id=job.pk, seq__in=[r.seq for r in rows]).values_list(
                "seq", flat=True
            )
        )
        fresh = [row for row in rows if row.seq not in existing]
        try:
            JobOutputChunk.objects.bulk_create(fresh, ignore_conflicts=True)
        except IntegrityError:
            fresh = []
        accepted = len(fresh)
        publish_output_after_commit(
            job.execution_id,
            job.pk,
            [{"seq": row.seq, "stream": row.stream, "data": row.data} for row in fresh],
        )
        if fresh:
            Job.objects.filter(pk=job.pk).update(
                output_bytes=F("output_bytes") + sum(len(r.data.encode()) for r in fresh),
                output_seq=max(max(r.seq for r in fresh), job.output_seq),
                output_truncated=truncated,
            )
    last_seq = max([job.output_seq, *[r.seq for r in rows]]) if rows else job.output_seq
    return {
        "accepted": accepted,
        "last_seq": last_seq,
        "cancel": job.kill_requested_at is not None,
    }


def jobs_to_kill(agent, listed: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Running jobs of `agent` whose execution was killed, and jobs the agent says it runs that
    are no longer its own (failed as lost while it was stopped or cut off): their lease is gone
    and a retry may already run elsewhere, so the agent must kill them rather than finish them."""
    kill = {
        str(job_id)
        for job_id in Job.objects.filter(
            agent=agent, status=JobStatus.RUNNING, kill_requested_at__isnull=False
        ).values_list("id", flat=True)
    }
    claimed = set()
    for value in listed:
        with contextlib.suppress(ValueError):
            claimed.add(str(uuid.UUID(str(value))))
    if claimed:
        held = Job.objects.filter(pk__in=claimed, agent=agent, status=JobStatus.RUNNING)
        kill |= claimed - {str(job_id) for job_id in held.values_list("id", flat=True)}
    return sorted(kill)


def fail_job(job_id, error: str, status: str = JobStatus.FAILED, now=None) -> bool:
    """Fail a running job on the control plane's own authority (agent lost, deadline passed):
    the lease is revoked by the state change, so a late report from the agent gets 409."""
    now = now or timezone.now()
    execution_id = Job.objects.filter(pk=job_id).values_list("execution_id", flat=True).first()
    if execution_id is None:
        return False
    with transaction.atomic():
        execution: Execution = lock_execution(execution_id)
        if not Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=status,
            error=error,
            error_kind=classify_failure(status, error),
            finished_at=now,
            lease=None,
        ):
            return False
        job = Job.objects.get(pk=job_id)
        recorder = EventRecorder(execution.pk, now)
        recorder.add(
            f"job.{status}",
            f"job for '{job.node_id}' (attempt {job.attempt}) {status}: {error}",
            level="error",
            node_id=job.node_id,
            job_id=job.pk,
        )
        settle_job(execution, job, recorder)
        recorder.flush()
    return True
