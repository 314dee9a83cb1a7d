"""A fan-out rings as many doorbells as the online agents serving its queue have slots; the
jobs not rung stay pending, and reports offering a slot pull them (nothing waits for a bell)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from agents.models import Agent
from agents.services import register_agent
from executions.advancing import start_execution
from executions.dispatch import DOORBELLS_ALWAYS, doorbells_worth_ringing, slots_serving
from executions.models import Execution, Job
from executions.sweeper import due_jobs
from orchestrator.services import create_workflow
from tests.api.test_agent_protocol import agent_client, complete

pytestmark = pytest.mark.django_db

WIDTH = 30
CHILDREN = [f"c{i}" for i in range(WIDTH)]
SHELL = {"action": "shell", "pool": "bells", "with": {"command": "true"}}
FAN_OUT = {
    "slug": "bells",
    "nodes": [{"id": "root", **SHELL, "on": {"success": CHILDREN}}]
    + [{"id": child, **SHELL} for child in CHILDREN],
}


def agent(name: str, pools: list[str], slots: int | None, *, online: bool = True) -> str:
    _, token = register_agent(enrollment_token=None, name=name, pools=pools, labels={})
    seen = timezone.now() - (timedelta(0) if online else timedelta(hours=1))
    load = {} if slots is None else {"slots": slots, "busy": 0}
    Agent.objects.filter(name=name).update(last_heartbeat=seen, load=load)
    return token


def jobs(count: int, queue: str) -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), queue) for _ in range(count)]


def test_a_wide_queue_is_rung_up_to_the_slots_of_its_online_agents(django_assert_num_queries):
    agent("small", ["wide"], 3)
    agent("big", ["wide", "other"], 9)
    agent("gone", ["wide"], 50, online=False)
    wide, narrow = jobs(30, "pool.wide"), jobs(DOORBELLS_ALWAYS, "pool.other")
    mixed = [job for pair in zip(wide, wide[::-1], strict=True) for job in pair][:30] + narrow

    assert slots_serving({"pool.wide", "pool.other", "agent.big"}) == {
        "pool.wide": 12,
        "pool.other": 9,
        "agent.big": 9,
    }
    kept = doorbells_worth_ringing(mixed)
    assert [job for job in kept if job[1] == "pool.wide"] == mixed[:12]
    assert [job for job in kept if job[1] == "pool.other"] == narrow
    with django_assert_num_queries(0):
        assert doorbells_worth_ringing(narrow) == narrow


def test_at_least_a_few_bells_and_no_cap_while_an_agent_has_not_said_its_slots():
    agent("tiny", ["few"], 1)
    assert len(doorbells_worth_ringing(jobs(20, "pool.few"))) == DOORBELLS_ALWAYS
    assert len(doorbells_worth_ringing(jobs(20, "pool.nobody"))) == DOORBELLS_ALWAYS
    agent("new", ["few"], None)
    assert len(doorbells_worth_ringing(jobs(20, "pool.few"))) == 20


def test_a_fan_out_rings_the_slots_and_reports_pull_the_rest(
    api, django_capture_on_commit_callbacks
):
    token = agent("bell-agent", ["bells"], 2)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("pool.bells")
    create_workflow(FAN_OUT)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post("/api/v1/workflows/bells/execute/", {}, format="json")
    execution = Execution.objects.get(pk=started.json()["id"])
    client = agent_client(token)
    root = Job.objects.get(execution=execution, node_id="root")
    lease = client.post(f"/api/agent/v1/jobs/{root.pk}/claim").json()["lease"]
    broker.delete("pool.bells")

    with django_capture_on_commit_callbacks(execute=True):
        reply = complete(client, root.pk, lease, accept_next=True).json()

    children = Job.objects.filter(execution=execution).exclude(node_id="root")
    statuses = sorted(children.values_list("status", flat=True))
    assert reply["next"] is not None, "the reporting slot got a child at once"
    assert statuses.count("running") == 1
    assert statuses.count("dispatched") == DOORBELLS_ALWAYS == broker.llen("pool.bells")
    assert statuses.count("pending") == WIDTH - 1 - DOORBELLS_ALWAYS

    running = {reply["next"]["job_id"]: reply["next"]["lease"]}
    while running:
        job_id, lease = running.popitem()
        with django_capture_on_commit_callbacks(execute=True):
            nxt = complete(client, job_id, lease, accept_next=True).json()["next"]
        if nxt is not None:
            running[nxt["job_id"]] = nxt["lease"]
    assert set(children.values_list("status", flat=True)) == {"completed"}, (
        "one slot reporting with accept_next works through every child, rung or not"
    )
    execution.refresh_from_db()
    assert execution.status == "completed"
    broker.delete("pool.bells")


def test_the_sweeper_rings_a_wide_queues_pending_jobs_up_to_its_free_doorbell_budget():
    """Still pending after the republish delay: rung up to the slots, less the bells still
    unanswered; a retry due now and a bell unanswered too long are rung whatever the budget."""
    agent("sweep-agent", ["bells"], 10)
    execution = start_execution(create_workflow(FAN_OUT))
    root = Job.objects.get(execution=execution, node_id="root")
    long_ago = timezone.now() - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_PENDING_AFTER + 5)
    children = [
        Job(
            execution=execution,
            node_id=child,
            action="shell",
            queue="pool.bells",
            queued_at=long_ago,
        )
        for child in CHILDREN
    ]
    Job.objects.bulk_create(children)
    unanswered = children[:4]
    Job.objects.filter(pk__in=[j.pk for j in unanswered]).update(
        status="dispatched", dispatched_at=timezone.now()
    )
    retry = children[4]
    Job.objects.filter(pk=retry.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    Job.objects.filter(pk=root.pk).update(status="running")

    due = due_jobs(timezone.now())

    never_rung = [job_id for job_id, _ in due if job_id != str(retry.pk)]
    assert len(never_rung) == 10 - len(unanswered), "the budget less the unanswered bells"
    assert str(retry.pk) in {job_id for job_id, _ in due}
    assert not {str(j.pk) for j in unanswered} & {job_id for job_id, _ in due}

    Job.objects.filter(pk__in=[j.pk for j in unanswered]).update(status="running")
    Job.objects.filter(pk__in=never_rung).update(status="dispatched", dispatched_at=timezone.now())
    assert len(due_jobs(timezone.now())) == 10 - len(never_rung) + 1, (
        "answered bells free their budget again (the retry is still due)"
    )
    stale = timezone.now() - timedelta(seconds=settings.SWITCHYARD_REPUBLISH_DISPATCHED_AFTER + 5)
    Job.objects.filter(pk__in=never_rung).update(dispatched_at=stale)
    assert set(never_rung) <= {job_id for job_id, _ in due_jobs(timezone.now())}, (
        "bells unanswered too long are rung again, budget or not"
    )
