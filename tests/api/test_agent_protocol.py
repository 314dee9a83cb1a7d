"""Agent protocol: registration, claim (one winner), fenced and idempotent reports, advancing."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from rest_framework.test import APIClient

from agents.models import Agent, EnrollmentToken
from agents.services import create_enrollment_token, register_agent
from executions.jobs import fail_job
from executions.models import Execution, Job
from orchestrator.roles import set_roles
from orchestrator.services import create_workflow
from orchestrator.tokens import hash_token

CHAIN = {
    "slug": "chain",
    "inputs": {"name": {"type": "string", "default": "x"}},
    "nodes": [
        {
            "id": "first",
            "action": "shell",
            "with": {"command": "echo one"},
            "on": {"success": "second"},
        },
        {
            "id": "second",
            "action": "shell",
            "with": {"command": "echo got {{ nodes.first.output.outputs.value }}"},
        },
    ],
}


def agent_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def agent_token(db):
    _, token = register_agent(enrollment_token=None, name="a1", pools=["default"], labels={})
    return token


@pytest.fixture
def execution(api, db):
    create_workflow(CHAIN)
    response = api.post("/api/v1/workflows/chain/execute/", {}, format="json")
    return Execution.objects.get(pk=response.json()["id"])


def complete(client, job_id, lease, **fields):
    body = {"lease": str(lease), "status": "completed", "exit_code": 0, "stdout": "ok\n"} | fields
    return client.post(f"/api/agent/v1/jobs/{job_id}/complete", body, format="json")


@pytest.mark.django_db
def test_register_stores_only_a_digest_and_respects_the_enrollment_token():
    _, raw = create_enrollment_token(max_uses=1, pools=["linux"])
    client = APIClient()
    response = client.post(
        "/api/agent/v1/register",
        {"enrollment_token": raw, "name": "web-01", "labels": {"os": "linux"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["queues"] == ["pool.linux", "agent.web-01"]
    agent = Agent.objects.get(name="web-01")
    assert agent.token_digest == hash_token(body["token"]) and body["token"] not in str(
        Agent.objects.values().get()
    )
    assert EnrollmentToken.objects.get().uses == 1
    again = client.post(
        "/api/agent/v1/register", {"enrollment_token": raw, "name": "web-02"}, format="json"
    )
    assert again.status_code == 403
    bad = client.post("/api/agent/v1/register", {"name": "has space"}, format="json")
    assert bad.status_code == 400
    assert {e["path"] for e in bad.json()["errors"]} == {"enrollment_token", "name"}


@pytest.mark.django_db
def test_claim_complete_advances_the_graph(execution, agent_token):
    client = agent_client(agent_token)
    first = Job.objects.get(execution=execution, node_id="first")
    claim = client.post(f"/api/agent/v1/jobs/{first.pk}/claim", {}, format="json")
    assert claim.status_code == 200, claim.content
    spec = claim.json()
    assert spec["params"] == {"command": "echo one"} and spec["attempt"] == 1
    assert client.post(f"/api/agent/v1/jobs/{first.pk}/claim").status_code == 409

    response = complete(client, first.pk, spec["lease"], outputs={"value": "42"})
    assert response.status_code == 200 and response.json()["applied"] is True
    second = Job.objects.get(execution=execution, node_id="second")
    assert second.params == {"command": "echo got 42"}
    assert second.status in ("pending", "dispatched")

    repeat = complete(client, first.pk, spec["lease"], outputs={"value": "42"})
    assert repeat.status_code == 200 and repeat.json()["applied"] is False
    assert Job.objects.filter(execution=execution).count() == 2

    stale = complete(client, first.pk, uuid.uuid4())
    assert stale.status_code == 409
    execution.refresh_from_db()
    assert execution.nodes["first"]["status"] == "completed"


def broker_queue_length(queue: str) -> int:
    """Messages waiting in a queue of the real Redis broker (kombu keeps each queue in a list
    named after it)."""
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue)


def test_report_hands_the_job_it_made_ready_to_the_reporting_agent(
    api, execution, agent_token, django_capture_on_commit_callbacks
):
    """`accept_next`: the next job is claimed for the reporter in the report's transaction and
    never published; a repeated report hands nothing over again."""
    queued_before = broker_queue_length("pool.default")
    client = agent_client(agent_token)
    client.post("/api/agent/v1/heartbeat", {"running_jobs": []}, format="json")
    first = Job.objects.get(execution=execution, node_id="first")
    spec = client.post(f"/api/agent/v1/jobs/{first.pk}/claim").json()

    with django_capture_on_commit_callbacks(execute=True):
        response = complete(
            client, first.pk, spec["lease"], outputs={"value": "7"}, accept_next=True
        )
    assert response.status_code == 200, response.content
    body = response.json()
    second = Job.objects.get(execution=execution, node_id="second")
    assert body["applied"] is True
    assert body["next"]["job_id"] == str(second.pk)
    assert body["next"]["params"] == {"command": "echo got 7"}
    assert body["next"]["lease"] == str(second.lease)
    assert second.status == "running" and second.agent.name == "a1"
    assert broker_queue_length("pool.default") == queued_before, "nothing was published"
    kinds = list(execution.events.filter(job_id=second.pk).values_list("kind", flat=True))
    assert kinds == ["job.queued", "template.resolved", "job.claimed"]

    repeat = complete(client, first.pk, spec["lease"], outputs={"value": "7"}, accept_next=True)
    assert repeat.json()["applied"] is False
    assert repeat.json()["next"] == body["next"], "a repeated report returns the same next job"

    done = complete(client, second.pk, body["next"]["lease"], accept_next=True)
    assert done.json()["next"] is None
    execution.refresh_from_db()
    assert execution.status == "completed"

    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/workflows/chain/execute/", {}, format="json")
    assert broker_queue_length("pool.default") == queued_before + 1, "a plain start publishes"


def test_a_report_with_nothing_made_ready_pulls_the_oldest_due_job(api, agent_token):
    create_workflow(CHAIN)
    runs = [api.post("/api/v1/workflows/chain/execute/", {}, format="json").json() for _ in "ab"]
    client = agent_client(agent_token)
    older, newer = (Job.objects.get(execution_id=run["id"]) for run in runs)
    spec = client.post(f"/api/agent/v1/jobs/{newer.pk}/claim").json()
    failed = complete(
        client, newer.pk, spec["lease"], status="failed", exit_code=3, accept_next=True
    )
    assert failed.json()["next"]["job_id"] == str(older.pk)
    older.refresh_from_db()
    assert older.status == "running" and older.agent.name == "a1"
    assert client.post(f"/api/agent/v1/jobs/{older.pk}/claim").status_code == 409


def test_heartbeat_reclaims_running_jobs_the_agent_no_longer_has(execution, agent_token):
    """A claim whose response got lost: the agent's heartbeats never list the job, so once it is
    older than the grace it is failed as agent lost (and a retry would follow)."""
    from datetime import timedelta

    from django.utils import timezone

    client = agent_client(agent_token)
    first = Job.objects.get(execution=execution, node_id="first")
    client.post(f"/api/agent/v1/jobs/{first.pk}/claim")
    heartbeat = {"running_jobs": [], "version": "t", "load": {}}
    assert client.post("/api/agent/v1/heartbeat", heartbeat, format="json").status_code == 200
    first.refresh_from_db()
    assert first.status == "running"

    Job.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(minutes=5))
    listed = heartbeat | {"running_jobs": [str(first.pk)]}
    client.post("/api/agent/v1/heartbeat", listed, format="json")
    first.refresh_from_db()
    assert first.status == "running"

    client.post("/api/agent/v1/heartbeat", heartbeat, format="json")
    first.refresh_from_db()
    assert first.status == "failed" and first.error_kind == "agent_lost"
    assert "no longer runs it" in first.error


@pytest.mark.django_db
def test_claim_refuses_other_queues_unknown_jobs_and_bad_tokens(execution, agent_token):
    _, other = register_agent(enrollment_token=None, name="a2", pools=["gpu"], labels={})
    job = Job.objects.get(execution=execution, node_id="first")
    assert agent_client(other).post(f"/api/agent/v1/jobs/{job.pk}/claim").status_code == 409
    client = agent_client(agent_token)
    assert client.post(f"/api/agent/v1/jobs/{uuid.uuid4()}/claim").status_code == 404
    assert client.post("/api/agent/v1/jobs/not-a-uuid/claim").status_code == 404
    assert agent_client("nope").post(f"/api/agent/v1/jobs/{job.pk}/claim").status_code == 401
    Agent.objects.filter(name="a1").update(is_disabled=True)
    assert client.post(f"/api/agent/v1/jobs/{job.pk}/claim").status_code == 401


@pytest.mark.django_db
def test_reports_are_validated(execution, agent_token):
    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    bad = client.post(
        f"/api/agent/v1/jobs/{job.pk}/complete",
        {"lease": "x", "status": "weird", "duration_ms": -1},
        format="json",
    )
    assert bad.status_code == 400
    assert {e["path"] for e in bad.json()["errors"]} == {"lease", "status", "duration_ms"}
    assert complete(client, job.pk, lease, status="failed", exit_code=2).status_code == 200
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert "first" in execution.error


@pytest.mark.django_db
def test_cancel_stops_new_work(api, execution):
    response = api.post(f"/api/v1/executions/{execution.pk}/cancel/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Job.objects.get(execution=execution).status == "cancelled"
    again = api.post(f"/api/v1/executions/{execution.pk}/cancel/", {}, format="json")
    assert again.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_have_exactly_one_winner():
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    from django.contrib.auth import get_user_model

    from executions.advancing import start_execution

    workflow = create_workflow(CHAIN)
    get_user_model().objects.create_user("racer")
    execution = start_execution(workflow)
    job = Job.objects.get(execution=execution)
    tokens = [
        register_agent(enrollment_token=None, name=f"r{i}", pools=["default"], labels={})[1]
        for i in range(8)
    ]
    barrier = threading.Barrier(len(tokens))
    results: list[int] = []

    def claim(token: str) -> None:
        try:
            barrier.wait()
            response = agent_client(token).post(f"/api/agent/v1/jobs/{job.pk}/claim")
            results.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [409] * 7


@pytest.mark.django_db
def test_live_output_is_ordered_deduplicated_paged_and_capped(
    api, execution, agent_token, settings
):
    settings.SWITCHYARD_MAX_OUTPUT_BYTES = 40
    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    url = f"/api/agent/v1/jobs/{job.pk}/output"

    def send(*chunks):
        body = {
            "lease": lease,
            "chunks": [
                {"seq": seq, "stream": stream, "data": data} for seq, stream, data in chunks
            ],
        }
        return client.post(url, body, format="json")

    first = send((2, "stderr", "warn\n"), (1, "stdout", "\x1b[32mok\x1b[0m\n"))
    assert first.json() == {"accepted": 2, "last_seq": 2, "cancel": False}
    again = send((2, "stderr", "warn\n"))
    assert again.json()["accepted"] == 0
    output_url = f"/api/v1/executions/{execution.pk}/jobs/{job.pk}/output/"
    live = api.get(output_url).json()
    assert [c["seq"] for c in live["chunks"]] == [1, 2]
    assert live["stdout"] == "\x1b[32mok\x1b[0m\n" and live["stderr"] == "warn\n"
    assert [c["seq"] for c in api.get(f"{output_url}?after=1").json()["chunks"]] == [2]

    capped = send((3, "stdout", "x" * 100), (4, "stdout", "never stored"))
    assert capped.status_code == 200
    body = api.get(output_url).json()
    assert body["truncated"] is True
    assert "output truncated at 40 bytes" in body["stdout"]
    assert "never stored" not in body["stdout"]

    stale = client.post(url, {"lease": str(uuid.uuid4()), "chunks": []}, format="json")
    assert stale.status_code == 409
    bad = client.post(url, {"lease": lease, "chunks": [{"seq": 0, "stream": "tty"}]}, format="json")
    assert {e["path"] for e in bad.json()["errors"]} == {
        "chunks[0].seq",
        "chunks[0].stream",
        "chunks[0].data",
    }


@pytest.mark.django_db
def test_kill_marks_running_jobs_and_the_agent_learns_it(api, execution, agent_token):
    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    assert client.post("/api/agent/v1/heartbeat", {}, format="json").json()["cancel"] == []
    response = api.post(f"/api/v1/executions/{execution.pk}/kill/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    beat = client.post("/api/agent/v1/heartbeat", {"running_jobs": [str(job.pk)]}, format="json")
    assert beat.json()["cancel"] == [str(job.pk)]
    output = client.post(
        f"/api/agent/v1/jobs/{job.pk}/output", {"lease": lease, "chunks": []}, format="json"
    )
    assert output.json()["cancel"] is True
    report = complete(
        client, job.pk, lease, status="failed", exit_code=-15, error="killed by the control plane"
    )
    assert report.status_code == 200
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert Job.objects.filter(execution=execution).count() == 1


@pytest.mark.django_db
def test_a_restarted_agent_that_no_longer_lists_a_job_loses_it(execution, agent_token, settings):
    """kill -9 and a quick restart: the agent never looks offline, but its heartbeat stops listing
    the job, so the job fails as lost and follows its retry policy instead of hanging."""
    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    client.post("/api/agent/v1/heartbeat", {}, format="json")
    job.refresh_from_db()
    assert job.status == "running", "a job claimed just now may not be listed yet"

    Job.objects.filter(pk=job.pk).update(
        started_at=job.started_at - timedelta(seconds=3 * settings.SWITCHYARD_HEARTBEAT_INTERVAL)
    )
    client.post("/api/agent/v1/heartbeat", {"running_jobs": []}, format="json")

    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("agent lost")
    assert complete(client, job.pk, lease).status_code == 409


@pytest.mark.django_db
def test_an_agent_resumed_after_losing_its_lease_is_told_to_kill_the_job(execution, agent_token):
    """SIGSTOP past the lease: the control plane failed the job meanwhile; when the agent comes
    back still listing it, the heartbeat tells it to kill the job, and its late report is 409."""
    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    fail_job(job.pk, "agent lost (a1 stopped heartbeating)")

    beat = client.post(
        "/api/agent/v1/heartbeat", {"running_jobs": [str(job.pk), "not-a-uuid"]}, format="json"
    )

    assert beat.status_code == 200 and beat.json()["cancel"] == [str(job.pk)]
    assert complete(client, job.pk, lease).status_code == 409


@pytest.mark.django_db
def test_admins_create_list_and_revoke_enrollment_and_agent_tokens(api, execution, agent_token):
    created = api.post(
        "/api/v1/agents/enrollment-tokens/",
        {"description": "ci", "pools": ["linux"], "max_uses": 3},
        format="json",
    )
    assert created.status_code == 201
    raw, token_id = created.json()["token"], created.json()["id"]
    listed = api.get("/api/v1/agents/enrollment-tokens/").json()["results"]
    assert [t["id"] for t in listed] == [token_id] and "token" not in listed[0]
    assert api.post(f"/api/v1/agents/enrollment-tokens/{token_id}/revoke/").status_code == 200
    refused = APIClient().post(
        "/api/agent/v1/register", {"enrollment_token": raw, "name": "late"}, format="json"
    )
    assert refused.status_code == 403

    client = agent_client(agent_token)
    job = Job.objects.get(execution=execution, node_id="first")
    lease = client.post(f"/api/agent/v1/jobs/{job.pk}/claim").json()["lease"]
    revoked = api.post("/api/v1/agents/a1/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "disabled"
    assert client.post("/api/agent/v1/heartbeat", {}, format="json").status_code == 401
    assert complete(client, job.pk, lease).status_code == 401
    job.refresh_from_db()
    assert job.status == "failed" and "revoked" in job.error
    assert api.post("/api/v1/agents/nobody/revoke/").status_code == 404


@pytest.mark.django_db
def test_only_admins_manage_agents(django_user_model, agent_token):
    from orchestrator.authentication import create_api_token

    viewer = django_user_model.objects.create_user("viewer")
    set_roles(viewer, add=["operator"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_api_token(viewer)}")
    assert client.get("/api/v1/agents/").status_code == 200
    assert client.post("/api/v1/agents/a1/revoke/").status_code == 403
    assert client.post("/api/v1/agents/enrollment-tokens/", {}, format="json").status_code == 403
