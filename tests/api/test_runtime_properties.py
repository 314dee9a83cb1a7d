"""Property test of the real runtime (engine + services + PostgreSQL), not just the planner:
random DAGs with conditions, joins, error edges and retry policies, driven through claim and
report exactly as agents do, with random job outcomes, duplicated reports and stale leases."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.services import register_agent
from executions.advancing import ExecutionConflict, start_execution
from executions.jobs import JobReport, claim_job
from executions.models import Execution, Job
from executions.report_batch import report_job_result
from orchestrator.services import create_workflow

slugs = itertools.count()


@st.composite
def definitions(draw) -> dict:
    size = draw(st.integers(min_value=1, max_value=7))
    nodes = []
    for index in range(size):
        later = [f"n{j}" for j in range(index + 1, size)]
        kind = draw(st.sampled_from(["action", "action", "action", "condition", "join"]))
        node: dict = {"id": f"n{index}"}
        edges: dict = {}
        if kind == "action":
            node |= {"action": "shell", "with": {"command": "true"}}
            retries = draw(st.integers(min_value=0, max_value=2))
            if retries:
                node["retries"] = retries
            keys = ["success", "error"]
        elif kind == "condition":
            node |= {"type": "condition", "if": draw(st.sampled_from(["true", "false"]))}
            keys = ["true", "false"]
        else:
            node |= {"type": "join"}
            keys = ["success"]
        if later:
            for key in keys:
                targets = draw(st.lists(st.sampled_from(later), max_size=2, unique=True))
                if targets:
                    edges[key] = targets
        if edges:
            node["on"] = edges
        if draw(st.booleans()):
            node["wait_for"] = "any"
        nodes.append(node)
    return {"slug": f"prop-{next(slugs)}", "nodes": nodes}


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition=definitions(), data=st.data())
def test_random_runs_terminate_with_sound_attempt_histories(definition, data):
    workflow = create_workflow(definition)
    agent, _ = register_agent(
        enrollment_token=None, name=f"a-{uuid.uuid4().hex[:8]}", pools=["default"], labels={}
    )
    execution = start_execution(workflow)
    retries = {n["id"]: n.get("retries", 0) for n in definition["nodes"] if "action" in n}
    for _ in range(100):
        pending = list(
            Job.objects.filter(execution=execution, status__in=["pending", "dispatched"])
        )
        if not pending:
            break
        for job in pending:
            try:
                claimed = claim_job(agent, job.pk)
            except ExecutionConflict:
                assert Job.objects.get(pk=job.pk).status == "cancelled"
                continue
            outcome = data.draw(st.sampled_from(["completed", "failed", "timeout"]))
            report = JobReport(lease=claimed.lease, status=outcome, exit_code=0)
            report_job_result(agent, job.pk, report)
            if data.draw(st.booleans()):
                _, applied = report_job_result(agent, job.pk, report)
                assert applied is False
            with pytest.raises(ExecutionConflict):
                report_job_result(agent, job.pk, JobReport(lease=uuid.uuid4(), status=outcome))
    execution = Execution.objects.get(pk=execution.pk)
    assert execution.status in ("completed", "failed")
    jobs = list(Job.objects.filter(execution=execution))
    for node_id, allowed in retries.items():
        attempts = sorted(j.attempt for j in jobs if j.node_id == node_id)
        assert attempts == list(range(1, len(attempts) + 1))
        assert len(attempts) <= allowed + 1
        successes = [j for j in jobs if j.node_id == node_id and j.status == "completed"]
        assert len(successes) <= 1
        if successes:
            assert successes[0].attempt == attempts[-1]
    states = {node_id: entry["status"] for node_id, entry in execution.nodes.items()}
    assert all(status in ("completed", "failed", "skipped") for status in states.values())
    failed_unhandled = [
        n["id"]
        for n in definition["nodes"]
        if states[n["id"]] == "failed" and "error" not in n.get("on", {})
    ]
    assert (execution.status == "failed") == bool(failed_unhandled)
