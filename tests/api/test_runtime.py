"""Runtime behaviour of the control plane, in-process against PostgreSQL: routing, liveness,
fencing, approvals, assertions, output extraction and timers."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from agents.models import Agent
from agents.services import register_agent
from approvals.models import ApprovalRequest
from approvals.services import DecisionRefused, decide
from executions.advancing import ExecutionConflict, start_execution
from executions.jobs import JobReport, claim_job
from executions.models import Execution, Job
from executions.report_batch import report_job_result
from executions.sweeper import sweep
from orchestrator.roles import set_roles
from orchestrator.services import create_workflow
from tests.api.runtime_support import finish, pending_job


def online(name: str, pools=("default",), labels=None) -> Agent:
    agent, _ = register_agent(
        enrollment_token=None, name=name, pools=list(pools), labels=labels or {}
    )
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=timezone.now())
    agent.refresh_from_db()
    return agent


def single(node: dict, slug: str = "one", **extra) -> object:
    return create_workflow({"slug": slug, "nodes": [node], **extra})


@pytest.mark.django_db
def test_labels_route_to_a_matching_agent_or_wait_with_a_reason():
    online("plain")
    workflow = single(
        {"id": "x", "action": "shell", "with": {"command": "true"}, "labels": {"os": "linux"}}
    )
    execution = start_execution(workflow)
    job = Job.objects.get(execution=execution)
    assert job.queue == "" and "with labels os=linux" in job.wait_reason
    assert execution.events.filter(kind="job.waiting").exists()
    sweep()
    assert Job.objects.get(pk=job.pk).queue == ""
    linux = online("linux-1", labels={"os": "linux", "region": "eu"})
    sweep()
    job.refresh_from_db()
    assert job.queue == "agent.linux-1" and job.wait_reason == ""
    assert job.status == "dispatched"
    assert claim_job(linux, job.pk).status == "running"


@pytest.mark.django_db
def test_pool_without_online_agents_says_why_the_job_waits():
    execution = start_execution(
        single({"id": "x", "action": "shell", "pool": "gpu", "with": {"command": "true"}})
    )
    job = Job.objects.get(execution=execution)
    assert job.queue == "pool.gpu" and job.wait_reason == "no online agent in pool 'gpu'"
    agent = online("gpu-1", pools=["gpu"])
    assert claim_job(agent, job.pk).wait_reason == ""


@pytest.mark.django_db
def test_lost_agent_fails_its_job_which_is_retried_and_its_late_report_is_refused():
    workflow = single({"id": "x", "action": "shell", "retries": 1, "with": {"command": "true"}})
    agent = online("a")
    execution = start_execution(workflow)
    job = claim_job(agent, pending_job(execution, "x").pk)
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert sweep()["agent_lost"] == 0, "a claim this recent proves the agent alive"
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    assert sweep()["agent_lost"] == 1
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("agent lost")
    retry = pending_job(execution, "x")
    assert retry.attempt == 2
    with pytest.raises(ExecutionConflict):
        report_job_result(
            agent, job.pk, JobReport(lease=job.lease or uuid.uuid4(), status="completed")
        )
    original_lease = Job.objects.get(pk=job.pk).lease
    assert original_lease is None


@pytest.mark.django_db
def test_assertions_and_json_extraction():
    workflow = create_workflow(
        {
            "slug": "http-two",
            "nodes": [
                {
                    "id": "api",
                    "action": "http",
                    "with": {"url": "http://example.test/"},
                    "outputs": {"token": "$.data.token", "ids": "$.items[*].id"},
                    "assert": [
                        "{{ output.http.status == 200 }}",
                        "output.json['items'] | length > 1",
                    ],
                    "on": {"success": "use", "error": "fallback"},
                },
                {
                    "id": "use",
                    "action": "shell",
                    "with": {"command": "echo {{ nodes.api.output.outputs.token }}"},
                },
                {"id": "fallback", "action": "shell", "with": {"command": "echo fallback"}},
            ],
        }
    )
    agent = online("a")
    good = start_execution(workflow)
    body = {"data": {"token": "t0k"}, "items": [{"id": 1}, {"id": 2}]}
    job = finish(agent, good, "api", http={"status": 200, "json": body}, exit_code=None)
    assert job.status == "completed"
    assert job.outputs == {"token": "t0k", "ids": [1, 2]}
    assert [a["passed"] for a in job.assertions] == [True, True]
    assert pending_job(good, "use").params == {"command": "echo t0k"}

    bad = start_execution(workflow)
    job = finish(agent, bad, "api", http={"status": 503, "json": {"items": []}})
    assert job.status == "failed"
    assert "outputs.token: $.data.token matched nothing" in job.error
    assert "assertion failed: {{ output.http.status == 200 }}" in job.error
    assert [a["passed"] for a in job.assertions] == [False, False]
    assert pending_job(bad, "fallback").node_id == "fallback"
    assert bad.events.filter(kind="assertion", level="error").count() == 2


@pytest.mark.django_db
def test_wait_nodes_are_resumed_by_the_sweeper():
    workflow = create_workflow(
        {
            "slug": "waits",
            "nodes": [
                {"id": "pause", "type": "wait", "duration": "1h", "on": {"success": "after"}},
                {"id": "after", "action": "shell", "with": {"command": "true"}},
            ],
        }
    )
    execution = start_execution(workflow)
    assert execution.nodes["pause"]["status"] == "waiting"
    assert execution.next_timer_at is not None
    assert sweep()["timers_fired"] == 0
    assert sweep(timezone.now() + timedelta(hours=2))["timers_fired"] == 1
    execution.refresh_from_db()
    assert execution.nodes["pause"]["status"] == "completed"
    assert execution.next_timer_at is None
    assert Job.objects.filter(execution=execution, node_id="after").exists()


APPROVAL = {
    "slug": "gate",
    "nodes": [
        {
            "id": "ok",
            "type": "approval",
            "message": "go?",
            "quorum": 2,
            "timeout": "1h",
            "approvers": {"users": ["alice", "bob", "carol"], "groups": ["sre"]},
            "on": {"approved": "yes", "rejected": "no"},
        },
        {"id": "yes", "action": "shell", "with": {"command": "true"}},
        {"id": "no", "action": "shell", "with": {"command": "true"}},
    ],
}


@pytest.fixture
def people(django_user_model):
    users = {
        n: django_user_model.objects.create_user(n)
        for n in ("alice", "bob", "carol", "mallory", "sam")
    }
    for user in users.values():
        set_roles(user, add=["approver"])
    Group.objects.create(name="sre").user_set.add(users["sam"])
    return users


@pytest.mark.django_db
def test_quorum_rights_and_self_approval(people):
    execution = start_execution(create_workflow(APPROVAL), user=people["alice"])
    assert execution.status == "paused"
    request = ApprovalRequest.objects.get(execution=execution)
    with pytest.raises(DecisionRefused, match="not one of"):
        decide(request.pk, people["mallory"], approve=True)
    with pytest.raises(DecisionRefused, match="self-approval"):
        decide(request.pk, people["alice"], approve=True)
    decide(request.pk, people["bob"], approve=True, note="fine")
    with pytest.raises(ExecutionConflict, match="already voted"):
        decide(request.pk, people["bob"], approve=True)
    execution.refresh_from_db()
    assert execution.status == "paused"
    decide(request.pk, people["sam"], approve=True, note="ship it")
    execution.refresh_from_db()
    assert execution.status == "running"
    assert execution.nodes["ok"]["status"] == "completed"
    assert execution.nodes["ok"]["output"]["respondedBy"] == "sam"
    assert len(execution.nodes["ok"]["output"]["approvals"]) == 2
    assert pending_job(execution, "yes")


@pytest.mark.django_db
def test_one_rejection_rejects_and_expiry_follows_rejected(people):
    workflow = create_workflow(APPROVAL)
    rejected = start_execution(workflow)
    decide(ApprovalRequest.objects.get(execution=rejected).pk, people["carol"], approve=False)
    rejected.refresh_from_db()
    assert rejected.nodes["ok"]["status"] == "completed"
    assert pending_job(rejected, "no")
    expiring = start_execution(workflow)
    assert sweep(timezone.now() + timedelta(hours=2))["approvals_expired"] == 1
    request = ApprovalRequest.objects.get(execution=expiring)
    assert request.status == "expired" and request.note == "timeout"
    assert pending_job(expiring, "no")
    assert expiring.events.filter(kind="approval.expired").exists()


@pytest.mark.django_db
def test_cancel_cancels_pending_approvals(people):
    from executions.advancing import cancel_execution

    execution = start_execution(create_workflow(APPROVAL))
    cancel_execution(execution.pk)
    assert ApprovalRequest.objects.get(execution=execution).status == "cancelled"
    execution.refresh_from_db()
    assert execution.status == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_yield_exactly_one_outcome(django_user_model):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    definition = {
        **APPROVAL,
        "nodes": [{**APPROVAL["nodes"][0], "quorum": 1, "approvers": {}}, *APPROVAL["nodes"][1:]],
    }
    execution = start_execution(create_workflow(definition))
    request = ApprovalRequest.objects.get(execution=execution)
    voters = [django_user_model.objects.create_superuser(f"v{i}") for i in range(6)]
    barrier = threading.Barrier(len(voters))
    outcomes: list[str] = []

    def vote(index: int) -> None:
        try:
            barrier.wait()
            decide(request.pk, voters[index], approve=index % 2 == 0)
            outcomes.append("decided")
        except ExecutionConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(len(voters))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["decided"]
    execution = Execution.objects.get(pk=execution.pk)
    assert Job.objects.filter(execution=execution).count() == 1


@pytest.mark.django_db
def test_failures_are_classified_and_overdue_jobs_time_out_on_the_control_plane():
    workflow = create_workflow(
        {
            "slug": "kinds",
            "nodes": [
                {
                    "id": "slow",
                    "action": "shell",
                    "timeout": "1s",
                    "with": {"command": "true"},
                    "on": {"error": "bad"},
                },
                {"id": "bad", "action": "shell", "with": {"command": "true"}},
            ],
        }
    )
    agent = online("k")
    execution = start_execution(workflow)
    job = claim_job(agent, pending_job(execution, "slow").pk)
    assert sweep()["jobs_timed_out"] == 0
    assert sweep(timezone.now() + timedelta(minutes=5))["jobs_timed_out"] == 1
    job.refresh_from_db()
    assert (job.status, job.error_kind) == ("timeout", "timeout")
    assert job.error.startswith("no result within 1s")
    with pytest.raises(ExecutionConflict):
        report_job_result(
            agent, job.pk, JobReport(lease=job.lease or uuid.uuid4(), status="completed")
        )
    failed = finish(agent, execution, "bad", status="failed", exit_code=2, error="exit code 2")
    assert failed.error_kind == "exit_code"
