"""Compare two executions side by side: version, inputs, and per node status, exit code,
duration, agent and output (a unified diff of the last attempt's stdout and stderr tails).

Three queries whatever the size: both executions (with workflow and version), and the last
attempt of every node of both in one pass over their jobs.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.db.models import Q

from executions.models import Execution, ExecutionStatus, Job

OUTPUT_TAIL_LINES = 200
DIFF_MAX_LINES = 400


def last_success_before(execution: Execution) -> Execution | None:
    """The latest completed run of the same workflow created before `execution`."""
    return (
        Execution.objects.filter(
            workflow_id=execution.workflow_id, status=ExecutionStatus.COMPLETED
        )
        .filter(
            Q(created_at__lt=execution.created_at)
            | Q(created_at=execution.created_at, id__lt=execution.pk)
        )
        .order_by("-created_at", "-id")
        .only("id")
        .first()
    )


def tail_lines(text: str) -> list[str]:
    return (text or "").splitlines()[-OUTPUT_TAIL_LINES:]


def text_diff(left: str, right: str, name: str) -> str:
    lines = list(
        difflib.unified_diff(
            tail_lines(left),
            tail_lines(right),
            fromfile=f"left/{name}",
            tofile=f"right/{name}",
            lineterm="",
            n=2,
        )
    )
    if len(lines) > DIFF_MAX_LINES:
        lines = [*lines[:DIFF_MAX_LINES], f"… {len(lines) - DIFF_MAX_LINES} more diff lines"]
    return "\n".join(lines)


def definition_text(execution: Execution) -> list[str]:
    return json.dumps(execution.version.definition, indent=2, sort_keys=True).splitlines()


def side(execution: Execution) -> dict[str, Any]:
    return {
        "id": str(execution.pk),
        "workflow": execution.workflow.slug,
        "version": execution.version.number,
        "status": execution.status,
        "trigger_kind": execution.trigger_kind,
        "created_at": execution.created_at,
        "duration_ms": execution.duration_ms,
        "error": execution.error,
    }


def last_attempts(executions: list[Execution]) -> dict[tuple[str, str], Job]:
    """`{(execution_id, node_id): last attempt}` for both executions in one query."""
    jobs: dict[tuple[str, str], Job] = {}
    rows = (
        Job.objects.filter(execution_id__in=[e.pk for e in executions])
        .select_related("agent")
        .only(
            "execution_id",
            "node_id",
            "attempt",
            "status",
            "exit_code",
            "duration_ms",
            "error",
            "stdout",
            "stderr",
            "agent__name",
        )
        .order_by("execution_id", "node_id", "attempt")
    )
    for job in rows:
        jobs[(str(job.execution_id), job.node_id)] = job
    return jobs


def node_side(execution: Execution, node_id: str, job: Job | None) -> dict[str, Any] | None:
    state = (execution.nodes or {}).get(node_id)
    if state is None and job is None:
        return None
    status = state.get("status") if isinstance(state, dict) else None
    return {
        "status": status or (job.status if job else None),
        "attempts": job.attempt if job else 0,
        "job_status": job.status if job else None,
        "exit_code": job.exit_code if job else None,
        "duration_ms": job.duration_ms if job else None,
        "agent": job.agent.name if job and job.agent_id else None,
        "error": job.error if job else (state.get("reason", "") if state else ""),
    }


COMPARED = ("status", "exit_code", "agent", "error")


def compare(left: Execution, right: Execution) -> dict[str, Any]:
    """The side-by-side comparison of `left` (usually the older run) and `right`."""
    jobs = last_attempts([left, right])
    node_ids = sorted(set(left.nodes or {}) | set(right.nodes or {}) | {n for _, n in jobs})
    nodes = []
    for node_id in node_ids:
        left_job, right_job = jobs.get((str(left.pk), node_id)), jobs.get((str(right.pk), node_id))
        a, b = node_side(left, node_id, left_job), node_side(right, node_id, right_job)
        stdout = text_diff(
            left_job.stdout if left_job else "", right_job.stdout if right_job else "", "stdout"
        )
        stderr = text_diff(
            left_job.stderr if left_job else "", right_job.stderr if right_job else "", "stderr"
        )
        changed = sorted(key for key in COMPARED if (a or {}).get(key) != (b or {}).get(key)) + [
            name for name, diff in (("stdout", stdout), ("stderr", stderr)) if diff
        ]
        nodes.append(
            {
                "node": node_id,
                "left": a,
                "right": b,
                "changed": changed,
                "output_diff": {"stdout": stdout, "stderr": stderr},
            }
        )
    definition_diff = (
        ""
        if left.version_id == right.version_id
        else "\n".join(
            difflib.unified_diff(
                definition_text(left),
                definition_text(right),
                fromfile=f"v{left.version.number}",
                tofile=f"v{right.version.number}",
                lineterm="",
                n=2,
            )
        )
    )
    left_inputs, right_inputs = left.inputs or {}, right.inputs or {}
    return {
        "left": side(left),
        "right": side(right),
        "version": {
            "left": left.version.number,
            "right": right.version.number,
            "changed": left.version_id != right.version_id,
            "definition_diff": definition_diff,
        },
        "inputs": {
            "left": left_inputs,
            "right": right_inputs,
            "added": sorted(set(right_inputs) - set(left_inputs)),
            "removed": sorted(set(left_inputs) - set(right_inputs)),
            "changed": sorted(
                k for k in set(left_inputs) & set(right_inputs) if left_inputs[k] != right_inputs[k]
            ),
        },
        "duration_ms": {"left": left.duration_ms, "right": right.duration_ms},
        "nodes": nodes,
    }
