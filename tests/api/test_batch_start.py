"""Starting many runs in one request (`execute-batch`): all or none, each run as a single start
would make it, idempotent per run, and in a fixed number of statements whatever its size."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.dispatch import DOORBELLS_ALWAYS
from executions.models import Execution, ExecutionEvent, Job
from orchestrator.serializers import MAX_RUNS_PER_BATCH
from tests.api.test_doorbells import agent

pytestmark = pytest.mark.django_db

HOSTS = """
slug: patch-host
inputs:
  host: {type: string, required: true}
  reboot: {type: boolean, default: false}
nodes:
  - id: patch
    action: shell
    pool: batch
    with: {command: "patch {{ inputs.host | shell_quote }} reboot={{ inputs.reboot }}"}
    on: {success: verify}
  - id: verify
    action: shell
    pool: batch
    with: {command: "true"}
"""
URL = "/api/v1/workflows/patch-host/execute-batch/"


@pytest.fixture
def workflow(api):
    response = api.post("/api/v1/workflows/", {"definition": HOSTS}, format="json")
    assert response.status_code == 201, response.content


def errors_of(response) -> dict[str, str]:
    return {error["path"]: error["message"] for error in response.json()["errors"]}


def hosts(count: int, **extra) -> list[dict]:
    return [{"inputs": {"host": f"web-{n}"}, **extra} for n in range(count)]


def test_each_run_starts_as_a_single_start_would(api, workflow):
    runs = hosts(3)
    runs[1]["inputs"]["reboot"] = True
    runs[2]["labels"] = {"team": "ops"}
    response = api.post(URL, {"runs": runs}, format="json", HTTP_X_SWITCHYARD_CHANNEL="cli")

    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [r["workflow"] for r in results] == ["patch-host"] * 3
    assert all(r["created"] and r["status"] == "running" for r in results)
    by_id = {str(e.pk): e for e in Execution.objects.all()}
    executions = [by_id[r["id"]] for r in results]
    assert [e.inputs for e in executions] == [
        {"host": "web-0", "reboot": False},
        {"host": "web-1", "reboot": True},
        {"host": "web-2", "reboot": False},
    ]
    assert [e.labels for e in executions] == [{}, {}, {"team": "ops"}]
    assert executions[0].trigger == {"kind": "manual", "user": "root", "channel": "cli"}
    assert executions[0].created_by.username == "root"
    for execution in executions:
        assert execution.nodes["patch"]["status"] == "running"
        assert execution.nodes["verify"]["status"] == "pending"
        [job] = Job.objects.filter(execution=execution)
        assert (job.node_id, job.status, job.queue) == ("patch", "pending", "pool.batch")
        assert job.params["command"] == (
            f"patch {execution.inputs['host']} reboot={execution.inputs['reboot']}"
        )
        kinds = set(
            ExecutionEvent.objects.filter(execution=execution).values_list("kind", flat=True)
        )
        assert {"execution.created", "job.queued"} <= kinds
    detail = api.get(f"/api/v1/executions/{results[1]['id']}/").json()
    assert [job["node_id"] for job in detail["jobs"]] == ["patch"]


def test_every_bad_run_is_named_and_nothing_starts(api, workflow):
    runs = hosts(4)
    del runs[1]["inputs"]["host"]
    runs[3]["inputs"]["reboot"] = "maybe"
    response = api.post(URL, {"runs": runs}, format="json")

    assert response.status_code == 400
    assert set(errors_of(response)) == {"runs[1].inputs.host", "runs[3].inputs.reboot"}
    assert not Execution.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "runs"),
        ({"runs": []}, "runs"),
        ({"runs": "web-1"}, "runs"),
        ({"runs": [{"inputs": {"host": "a"}}, "b"]}, "runs[1]"),
        ({"runs": [{"inputs": {"host": "a"}, "labels": {"bad key!": "v"}}]}, "runs[0].labels"),
        ({"runs": [{"inputs": ["host"]}]}, "runs[0].inputs"),
        ({"runs": [{"inputs": {"host": "a"}, "idempotency_key": "x" * 201}]}, "runs[0]"),
        ({"runs": [{"inputs": {"host": "a"}, "idempotency_key": "a\nb"}]}, "runs[0]"),
        ({"runs": hosts(1), "version": 0}, "version"),
        ({"runs": hosts(MAX_RUNS_PER_BATCH + 1)}, "runs"),
    ],
)
def test_malformed_batches_are_400_with_paths(api, workflow, body, path):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert any(p == path or p.startswith(f"{path}.") for p in errors_of(response)), response.json()
    assert not Execution.objects.exists()


def test_a_key_repeated_inside_the_batch_is_refused(api, workflow):
    runs = hosts(3)
    runs[0]["idempotency_key"] = runs[2]["idempotency_key"] = "ticket-7"
    response = api.post(URL, {"runs": runs}, format="json")
    assert response.status_code == 400
    assert errors_of(response) == {"runs[2].idempotency_key": "repeats the key of runs[0]"}
    assert not Execution.objects.exists()


def test_a_retried_batch_answers_with_the_runs_it_started(api, workflow):
    first = api.post(
        URL,
        {"runs": [{"inputs": {"host": "a"}, "idempotency_key": "a"}, {"inputs": {"host": "b"}}]},
        format="json",
    )
    retry = api.post(
        URL,
        {
            "runs": [
                {"inputs": {"host": "a"}, "idempotency_key": "a"},
                {"inputs": {"host": "c"}, "idempotency_key": "c"},
            ]
        },
        format="json",
    )
    again = api.post(
        URL, {"runs": [{"inputs": {"host": "x"}, "idempotency_key": "c"}]}, format="json"
    )

    assert (first.status_code, retry.status_code, again.status_code) == (201, 201, 200)
    [a, _] = first.json()["results"]
    [a_again, c] = retry.json()["results"]
    assert a_again == a | {"created": False}
    assert c["created"] is True
    assert again.json()["results"] == [c | {"created": False}]
    assert Execution.objects.count() == 3
    assert Execution.objects.get(idempotency_key="c").inputs["host"] == "c"


def test_a_start_with_the_header_key_and_a_batch_share_keys(api, workflow):
    single = api.post(
        "/api/v1/workflows/patch-host/execute/",
        {"inputs": {"host": "a"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    batch = api.post(
        URL, {"runs": [{"inputs": {"host": "a"}, "idempotency_key": "k"}]}, format="json"
    )
    assert batch.status_code == 200
    assert batch.json()["results"][0]["id"] == single.json()["id"]


def test_a_run_that_cannot_start_is_a_conflict_or_not_found(api, workflow):
    assert api.post(URL, {"runs": hosts(1), "version": 9}, format="json").status_code == 404
    missing = "/api/v1/workflows/nope/execute-batch/"
    assert api.post(missing, {"runs": hosts(1)}, format="json").status_code == 404
    api.patch("/api/v1/workflows/patch-host/", {"is_active": False}, format="json")
    inactive = api.post(URL, {"runs": hosts(1)}, format="json")
    assert inactive.status_code == 409
    assert not Execution.objects.exists()


def test_a_batch_costs_the_same_statements_whatever_its_size(api, workflow):
    """No statement per run: the runs, their states, first jobs and log events are each
    written together, and online agents are looked up once. (Both sizes are wide enough to
    ask for the queue's slots and small enough to be inserted without COPY.)"""

    def statements(count: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = api.post(URL, {"runs": hosts(count)}, format="json")
        assert response.status_code == 201
        return len(queries.captured_queries)

    assert statements(DOORBELLS_ALWAYS + 2) == statements(15)
    assert Execution.objects.count() == Job.objects.count() == DOORBELLS_ALWAYS + 2 + 15


def test_a_wide_batch_rings_the_slots_and_leaves_the_rest_to_be_pulled(
    api, workflow, django_capture_on_commit_callbacks
):
    """A batch's first jobs share one queue, so they follow the fan-out rule: as many
    doorbells as the queue's online agents have slots; the rest stay pending for reports to
    pull (see tests/api/test_doorbells.py)."""
    agent("batch-agent", ["batch"], 3)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("pool.batch")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, {"runs": hosts(20)}, format="json")
    assert response.status_code == 201
    statuses = sorted(Job.objects.values_list("status", flat=True))
    assert statuses.count("dispatched") == DOORBELLS_ALWAYS == broker.llen("pool.batch")
    assert statuses.count("pending") == 20 - DOORBELLS_ALWAYS
    broker.delete("pool.batch")


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_sharing_a_key_start_it_once_and_answer_without_error(
    api, admin_user, workflow
):
    """Batches racing for one key on real PostgreSQL connections: the losers' inserts hit the
    unique constraint, roll back whole, and are retried answering with the winner's run."""
    import threading

    from rest_framework.test import APIClient

    from orchestrator.authentication import create_api_token

    token = create_api_token(admin_user)

    def start(key: str, barrier: threading.Barrier, answers: list) -> None:
        from django.db import connection

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        barrier.wait()
        runs = [{"inputs": {"host": "shared"}, "idempotency_key": key}, *hosts(2)]
        response = client.post(URL, {"runs": runs}, format="json")
        answers.append((response.status_code, response.json()))
        connection.close()

    for round_number in range(3):
        key = f"race-{round_number}"
        barrier = threading.Barrier(6)
        answers: list = []
        threads = [threading.Thread(target=start, args=(key, barrier, answers)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(code for code, _ in answers) == [201] * 6, answers
        shared = {body["results"][0]["id"] for _, body in answers}
        assert len(shared) == 1
        assert sorted(body["results"][0]["created"] for _, body in answers) == [False] * 5 + [True]
        assert Execution.objects.filter(idempotency_key=key).count() == 1
    assert Execution.objects.count() == 3 * (1 + 6 * 2)
