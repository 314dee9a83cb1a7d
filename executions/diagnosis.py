"""Rule-based, deterministic diagnosis of a failed execution. Nothing is stored.

It answers: which node failed and why (from the failing job's `error_kind`, error, exit code,
HTTP status and stderr tail, or the node's reason when it failed without a job), what changed
since the workflow's last successful run, how often this node failed lately, and what to try next.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.utils import timezone

from executions.models import Execution, ExecutionStatus, Job, JobStatus

DIAGNOSABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
HISTORY_WINDOW = timedelta(days=30)
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 2000
FAILED_JOB = (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED)

# (fragment in the lower-cased error/stderr, kind) — first match wins, most specific first.
TEXT_RULES = (
    ("connection refused", "connection_refused"),
    ("econnrefused", "connection_refused"),
    ("dns:", "dns"),
    ("name or service not known", "dns"),
    ("could not resolve host", "dns"),
    ("temporary failure in name resolution", "dns"),
    ("nodename nor servname", "dns"),
    ("tls:", "tls"),
    ("certificate verify failed", "tls"),
    ("ssl:", "tls"),
    ("x509", "tls"),
    ("authentication failed", "auth"),
    ("host key verification failed", "auth"),
    ("permission denied (publickey", "auth"),
    ("unauthorized", "auth"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("agent lost", "agent_lost"),
)
# `Job.error_kind` (see executions.jobs.FAILURE_PATTERNS) → diagnosis kind, when the text rules
# found nothing more specific.
ERROR_KINDS = {
    "timeout": "timeout",
    "agent_lost": "agent_lost",
    "auth": "auth",
    "connection": "connection",
    "http_status": "http_status",
    "exit_code": "exit_code",
    "assertion": "assertion",
    "output": "output",
    "network_policy": "network_policy",
    "secrets": "secrets",
    "cancelled": "cancelled",
    "killed": "killed",
    "agent": "agent",
}

SUGGESTIONS = {
    "connection_refused": (
        "Nothing accepted the connection: check that the target service is running and "
        "listening on that host and port, and that no firewall sits in between."
    ),
    "dns": (
        "The host name did not resolve: check it for typos and that the agent's DNS can resolve it."
    ),
    "tls": (
        "The TLS handshake failed: check the server certificate (expiry, host name, chain) "
        "and the CA bundle the agent trusts."
    ),
    "auth": (
        "Authentication was rejected: check that the credentials or key the node uses are "
        "current (rotate the secret if it expired) and allowed on the target."
    ),
    "timeout": (
        "The node ran out of time: check whether the target is slow or stuck, or raise the "
        "node's timeout if the work legitimately takes longer."
    ),
    "agent_lost": (
        "The agent stopped heartbeating while running the job: check the agent host "
        "(crash, restart, OOM kill, network) and re-run; add retries if this recurs."
    ),
    "template_error": (
        "The node failed before any job ran: fix the template or expression named in the "
        "reason (check referenced inputs, variables and node outputs) and re-run."
    ),
    "http_status": (
        "The HTTP call returned an error status: check the response body and the target "
        "service's logs; a 5xx may be transient, a 4xx usually means a bad request."
    ),
    "exit_code": (
        "The command exited with a non-zero code: read the stderr tail and run the command "
        "by hand on the agent to reproduce."
    ),
    "assertion": (
        "An assertion on the node's result failed: compare the actual result with what the "
        "assertion expects; the target's behaviour or the assertion may have changed."
    ),
    "output": (
        "The node's outputs could not be extracted: check the output expressions against "
        "what the command actually printed."
    ),
    "network_policy": (
        "The address is blocked by the network policy: use an allowed address or ask an "
        "admin to add it to the allow-list."
    ),
    "secrets": (
        "The agent could not be given the node's secrets: check that the referenced secrets "
        "exist and are in scope for this workflow."
    ),
    "connection": (
        "The connection to the target failed: check that it is reachable from the agent."
    ),
    "cancelled": "The job was cancelled: re-run the execution if that was not intended.",
    "killed": ("The job was killed: check who or what killed it (the execution log) and re-run."),
    "agent": (
        "The agent rejected the job spec: check that the agent version supports this "
        "action and its parameters."
    ),
    "error": "Read the error and stderr tail of the failing job, fix the cause and re-run.",
}


def tail(text: str) -> str:
    lines = (text or "").rstrip("\n").splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:]


def classify(job: Job | None, reason: str) -> str:
    if job is None:
        return "template_error"
    if job.status == JobStatus.TIMEOUT:
        return "timeout"
    text = f"{job.error}\n{tail(job.stderr)}".lower()
    if job.error_kind in ("", "error", "connection", "exit_code", "auth"):
        for fragment, kind in TEXT_RULES:
            if fragment in text:
                return kind
    return ERROR_KINDS.get(job.error_kind, "error")


def http_status(job: Job) -> int | None:
    if isinstance(job.http, dict):
        value = job.http.get("status") or job.http.get("status_code")
        if isinstance(value, int):
            return value
    return None


def summarize(kind: str, node_id: str, job: Job | None, reason: str) -> str:
    if job is None:
        return f"Node '{node_id}' failed without running a job: {reason or 'no reason recorded'}"
    parts = [f"Node '{node_id}' failed on attempt {job.attempt}"]
    if job.agent_id:
        parts.append(f"on agent '{job.agent.name}'")
    detail = job.error or (f"exit code {job.exit_code}" if job.exit_code is not None else "")
    summary = " ".join(parts) + f" ({kind.replace('_', ' ')})"
    return f"{summary}: {detail}" if detail else summary


def pick_failed_node(execution: Execution, last_jobs: dict[str, Job]) -> str | None:
    """The root failure: the failed node whose failing job finished first; else the first failed
    node without a job (a template error); else any failed node."""
    failed = [
        node_id
        for node_id, state in (execution.nodes or {}).items()
        if isinstance(state, dict) and state.get("status") == "failed"
    ]
    with_job = [n for n in failed if n in last_jobs and last_jobs[n].status in FAILED_JOB]
    if with_job:
        far_future = timezone.now() + timedelta(days=36500)

        def when(node_id: str):
            job = last_jobs[node_id]
            # Cancelled jobs are usually collateral of another node's failure: rank them last.
            return (job.status == JobStatus.CANCELLED, job.finished_at or far_future, node_id)

        return min(with_job, key=when)
    without_job = [n for n in failed if n not in last_jobs]
    if without_job:
        return without_job[0]
    if failed:
        return failed[0]
    return None


def last_jobs_by_node(execution: Execution) -> dict[str, Job]:
    jobs: dict[str, Job] = {}
    for job in (
        Job.objects.filter(execution=execution)
        .select_related("agent")
        .defer("stdout", "params", "outputs")
        .order_by("node_id", "attempt")
    ):
        jobs[job.node_id] = job
    return jobs


def dict_diff(before: dict, after: dict) -> dict[str, list[str]]:
    before, after = before or {}, after or {}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


def changes_since_success(
    execution: Execution, node_id: str | None, job: Job | None
) -> dict[str, Any]:
    success = (
        Execution.objects.filter(
            workflow_id=execution.workflow_id,
            status=ExecutionStatus.COMPLETED,
            created_at__lt=execution.created_at,
        )
        .select_related("version")
        .order_by("-created_at")
        .first()
    )
    failed_agent = job.agent.name if job is not None and job.agent_id else None
    if success is None:
        return {
            "last_success": None,
            "last_success_at": None,
            "version": {
                "failed_run": execution.version.number,
                "last_success": None,
                "changed": None,
            },
            "inputs": None,
            "agent": {"failed_run": failed_agent, "last_success": None, "changed": None},
            "duration_ms": {"failed_run": execution.duration_ms, "last_success": None},
        }
    success_agent = None
    if node_id:
        success_job = (
            Job.objects.filter(execution=success, node_id=node_id)
            .select_related("agent")
            .only("agent__name", "attempt")
            .order_by("-attempt")
            .first()
        )
        if success_job is not None and success_job.agent_id:
            success_agent = success_job.agent.name
    return {
        "last_success": str(success.pk),
        "last_success_at": success.created_at,
        "version": {
            "failed_run": execution.version.number,
            "last_success": success.version.number,
            "changed": execution.version_id != success.version_id,
        },
        "inputs": dict_diff(success.inputs, execution.inputs),
        "agent": {
            "failed_run": failed_agent,
            "last_success": success_agent,
            "changed": failed_agent != success_agent,
        },
        "duration_ms": {"failed_run": execution.duration_ms, "last_success": success.duration_ms},
    }


def node_history(execution: Execution, node_id: str | None) -> dict[str, Any]:
    since = timezone.now() - HISTORY_WINDOW
    history: dict[str, Any] = {
        "window_days": HISTORY_WINDOW.days,
        "runs": 0,
        "failures": 0,
        "share": None,
        "previous_failure": None,
    }
    if not node_id:
        return history
    node_status = KeyTextTransform("status", KeyTransform(node_id, "nodes"))
    recent = (
        Execution.objects.filter(workflow_id=execution.workflow_id, created_at__gte=since)
        .order_by()
        .annotate(node_status=node_status)
    )
    counts = recent.aggregate(
        runs=Count("id", filter=Q(node_status__isnull=False)),
        failures=Count("id", filter=Q(node_status="failed")),
    )
    previous = (
        recent.filter(node_status="failed", created_at__lt=execution.created_at)
        .exclude(pk=execution.pk)
        .order_by("-created_at")
        .values_list("id", flat=True)
        .first()
    )
    history.update(
        runs=counts["runs"],
        failures=counts["failures"],
        share=round(counts["failures"] / counts["runs"], 4) if counts["runs"] else None,
        previous_failure=str(previous) if previous else None,
    )
    return history


def diagnose(execution: Execution) -> dict[str, Any]:
    """The diagnosis of a failed (or timed-out) execution. The caller checks the status."""
    last_jobs = last_jobs_by_node(execution)
    node_id = pick_failed_node(execution, last_jobs)
    job = last_jobs.get(node_id) if node_id else None
    state = (execution.nodes or {}).get(node_id, {}) if node_id else {}
    reason = state.get("reason", "") if isinstance(state, dict) else ""

    if node_id is None:
        # Failed as a whole (e.g. the execution deadline) without a failed node.
        kind = "timeout" if execution.status == ExecutionStatus.TIMED_OUT else "error"
        cause = {
            "kind": kind,
            "summary": f"The execution {execution.status.replace('_', ' ')}: "
            f"{execution.error or 'no error recorded'}",
            "evidence": {"execution_error": execution.error},
        }
    else:
        kind = classify(job, reason)
        evidence: dict[str, Any] = {"node_reason": reason, "execution_error": execution.error}
        if job is not None:
            evidence.update(
                job=str(job.pk),
                attempt=job.attempt,
                status=job.status,
                agent=job.agent.name if job.agent_id else None,
                pool=job.pool,
                error_kind=job.error_kind,
                error=job.error,
                exit_code=job.exit_code,
                http_status=http_status(job),
                stderr_tail=tail(job.stderr),
                duration_ms=job.duration_ms,
            )
        cause = {
            "kind": kind,
            "summary": summarize(kind, node_id, job, reason),
            "evidence": evidence,
        }

    return {
        "execution": str(execution.pk),
        "workflow": execution.workflow.slug,
        "status": execution.status,
        "failed_node": node_id,
        "cause": cause,
        "changes": changes_since_success(execution, node_id, job),
        "history": node_history(execution, node_id),
        "suggestion": SUGGESTIONS.get(cause["kind"], SUGGESTIONS["error"]),
    }
