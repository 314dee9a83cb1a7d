"""Executions list/detail/log: filters, cursor pagination, bounded query counts, 4xx errors."""

from __future__ import annotations

import uuid

import pytest

from agents.services import register_agent
from executions.advancing import start_execution
from executions.jobs import claim_job
from executions.models import Execution
from orchestrator.models import Workflow
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

FANOUT = {
    "slug": "fanout",
    "nodes": [
        {
            "id": "root",
            "action": "shell",
            "with": {"command": "true"},
            "on": {"success": ["a", "b", "c"]},
        },
        {"id": "a", "action": "shell", "with": {"command": "true"}},
        {"id": "b", "action": "shell", "with": {"command": "true"}},
        {"id": "c", "action": "shell", "with": {"command": "true"}},
    ],
}
OTHER = {"slug": "other", "nodes": [{"id": "x", "action": "shell", "with": {"command": "true"}}]}


@pytest.fixture
def workflows(db):
    return create_workflow(FANOUT), create_workflow(OTHER)


def test_list_is_newest_first_with_filters(api, workflows):
    fanout, other = workflows
    runs = [start_execution(fanout, labels={"env": "prod"}) for _ in range(3)]
    runs.append(start_execution(other, labels={"env": "dev"}))
    body = api.get("/api/v1/executions/").json()
    assert [row["id"] for row in body["results"]] == [str(r.pk) for r in reversed(runs)]
    assert body["results"][0]["jobs_total"] == 1 and body["results"][0]["jobs_done"] == 0
    by_workflow = api.get("/api/v1/executions/?workflow=other").json()["results"]
    assert [row["workflow"] for row in by_workflow] == ["other"]
    assert len(api.get("/api/v1/executions/?label=env=prod").json()["results"]) == 3
    assert len(api.get("/api/v1/executions/?status=running,completed").json()["results"]) == 4
    assert api.get("/api/v1/executions/?status=completed").json()["results"] == []
    assert len(api.get("/api/v1/executions/?trigger=manual").json()["results"]) == 4


def test_bad_filters_are_400_with_paths(api, workflows):
    response = api.get("/api/v1/executions/?status=bogus&since=yesterday")
    assert response.status_code == 400
    assert {e["path"] for e in response.json()["errors"]} == {"status", "since"}
    assert api.get("/api/v1/executions/?cursor=garbage").status_code == 404


def test_cursor_pagination(api, workflows):
    fanout, _ = workflows
    ids = [str(start_execution(fanout).pk) for _ in range(5)]
    page = api.get("/api/v1/executions/?page_size=2").json()
    seen = [row["id"] for row in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]
    assert seen == list(reversed(ids))


def test_list_query_count_does_not_grow_with_rows(api, workflows, django_assert_max_num_queries):
    fanout, other = workflows
    for _ in range(30):
        start_execution(fanout)
        start_execution(other)
    with django_assert_max_num_queries(6):
        response = api.get("/api/v1/executions/")
    assert len(response.json()["results"]) == 60


def test_detail_has_nodes_jobs_and_log(api, workflows, django_assert_max_num_queries):
    fanout, _ = workflows
    execution = start_execution(fanout, inputs={})
    with django_assert_max_num_queries(8):
        body = api.get(f"/api/v1/executions/{execution.pk}/").json()
    assert body["workflow"] == "fanout" and body["version"] == 1
    assert [n["id"] for n in body["nodes"]] == ["root", "a", "b", "c"]
    assert body["nodes"][0]["status"] == "running"
    assert body["jobs"][0]["node_id"] == "root"
    assert body["log"][0]["kind"] == "execution.created"


def test_fan_out_creates_jobs_in_one_advance(api, workflows, django_assert_max_num_queries):
    fanout, _ = workflows
    agent, token = register_agent(enrollment_token=None, name="q", pools=["default"], labels={})
    execution = start_execution(fanout)
    job = claim_job(agent, execution.jobs.get().pk)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    with django_assert_max_num_queries(12):
        response = client.post(
            f"/api/agent/v1/jobs/{job.pk}/complete",
            {"lease": str(job.lease), "status": "completed"},
            format="json",
        )
    assert response.status_code == 200
    assert sorted(execution.jobs.values_list("node_id", flat=True)) == ["a", "b", "c", "root"]


def test_log_level_filter_and_errors(api, workflows):
    fanout, _ = workflows
    execution = start_execution(fanout)
    assert api.get(f"/api/v1/executions/{execution.pk}/log/?level=error").json()["results"] == []
    assert api.get(f"/api/v1/executions/{execution.pk}/log/?level=loud").status_code == 400
    assert api.get(f"/api/v1/executions/{uuid.uuid4()}/log/").status_code == 404
    assert api.get("/api/v1/executions/not-a-uuid/").status_code == 404


def test_job_output_endpoint(api, workflows):
    fanout, _ = workflows
    execution = start_execution(fanout)
    job = execution.jobs.get()
    body = api.get(f"/api/v1/executions/{execution.pk}/jobs/{job.pk}/output/").json()
    assert body["job_id"] == str(job.pk) and body["status"] == job.status
    assert body["chunks"] == [] and body["stdout"] == "" and body["last_seq"] == 0
    assert (
        api.get(f"/api/v1/executions/{execution.pk}/jobs/{job.pk}/output/?after=x").status_code
        == 400
    )
    assert (
        api.get(f"/api/v1/executions/{execution.pk}/jobs/{uuid.uuid4()}/output/").status_code == 404
    )


def test_deleting_a_workflow_with_runs_is_a_conflict(api, workflows):
    fanout, _ = workflows
    start_execution(fanout)
    assert api.delete("/api/v1/workflows/fanout/").status_code == 409
    assert Workflow.objects.filter(slug="fanout").exists()
    assert api.delete("/api/v1/workflows/other/").status_code == 204
    assert Execution.objects.count() == 1


def test_expression_debugger_renders_against_the_runs_context(api, workflows):
    from orchestrator.secret_store import save_secret
    from tests.api.runtime_support import finish

    save_secret("token", "very-secret-value")
    fanout, _ = workflows
    agent, _ = register_agent(enrollment_token=None, name="dbg", pools=["default"], labels={})
    execution = start_execution(fanout, inputs={})
    finish(agent, execution, "root", stdout="hello\n", outputs={"n": "3"})
    url = f"/api/v1/executions/{execution.pk}/evaluate/"
    ok = api.post(url, {"expression": "{{ nodes.root.output.outputs.n | int + 1 }}"}, format="json")
    assert ok.status_code == 200 and ok.json()["value"] == 4
    assert (
        api.post(url, {"expression": "nodes.root.output.stdout | trim"}, format="json").json()[
            "value"
        ]
        == "hello"
    )
    assert api.post(url, {"expression": "secrets.token"}, format="json").json()["value"] == "***"
    missing = api.post(url, {"expression": "{{ nodes.root.output.nope }}"}, format="json")
    assert missing.status_code == 400
    assert "nodes.root.output.nope" in missing.json()["errors"][0]["message"]
    assert api.post(url, {"expression": ""}, format="json").status_code == 400
    assert (
        api.post(url, {"expression": "{{ ''.__class__.__mro__ }}"}, format="json").status_code
        == 400
    )


def test_an_execution_keeps_the_definition_it_ran(api, workflows):
    fanout, _ = workflows
    execution = start_execution(fanout)
    changed = {**FANOUT, "nodes": [{"id": "only", "action": "shell", "with": {"command": "true"}}]}
    api.post("/api/v1/workflows/fanout/versions/", {"definition": changed}, format="json")
    api.post("/api/v1/workflows/fanout/publish/", {}, format="json")
    old = api.get(f"/api/v1/executions/{execution.pk}/").json()
    assert old["version"] == 1
    assert [n["id"] for n in old["definition"]["nodes"]] == ["root", "a", "b", "c"]
    assert [n["id"] for n in old["nodes"]] == ["root", "a", "b", "c"]
    new = api.post("/api/v1/workflows/fanout/execute/", {}, format="json").json()
    assert new["version"] == 2 and [n["id"] for n in new["nodes"]] == ["only"]


def test_rerun_replay_delete_labels_export_and_bulk(api, workflows):
    import csv as csv_module
    import io as io_module

    from tests.api.runtime_support import finish

    fanout, _ = workflows
    agent, _ = register_agent(enrollment_token=None, name="ops", pools=["default"], labels={})
    execution = start_execution(fanout, labels={"team": "a"})
    finish(agent, execution, "root", stdout="root-out\n")
    for node in ("a", "b"):
        finish(agent, execution, node)
    finish(agent, execution, "c", status="failed", exit_code=1, error="exit code 1")
    assert execution.status == "failed"
    base = f"/api/v1/executions/{execution.pk}"

    rerun = api.post(f"{base}/rerun/", {}, format="json")
    assert rerun.status_code == 201
    assert rerun.json()["rerun_of"] == str(execution.pk)
    assert rerun.json()["trigger"]["kind"] == "rerun"

    replay = api.post(f"{base}/replay/", {"from_node": "c"}, format="json")
    assert replay.status_code == 201, replay.content
    nodes = {n["id"]: n["status"] for n in replay.json()["nodes"]}
    assert nodes == {"root": "completed", "a": "completed", "b": "completed", "c": "running"}
    assert [j["node_id"] for j in replay.json()["jobs"]] == ["c"]
    assert api.post(f"{base}/replay/", {"from_node": "zz"}, format="json").status_code == 400
    running = replay.json()["id"]
    assert (
        api.post(
            f"/api/v1/executions/{running}/replay/", {"from_node": "c"}, format="json"
        ).status_code
        == 409
    )

    labelled = api.patch(base + "/", {"labels": {"team": "b", "ticket": "OPS-1"}}, format="json")
    assert labelled.json()["labels"] == {"team": "b", "ticket": "OPS-1"}
    assert api.patch(base + "/", {"labels": {"bad key": "x"}}, format="json").status_code == 400

    exported = api.get("/api/v1/executions/export/?format=json&workflow=fanout")
    rows = __import__("json").loads(b"".join(exported.streaming_content))
    assert {row["id"] for row in rows} >= {str(execution.pk), running}
    as_csv = api.get("/api/v1/executions/export/?format=csv&status=failed")
    table = list(
        csv_module.DictReader(io_module.StringIO(b"".join(as_csv.streaming_content).decode()))
    )
    assert [row["id"] for row in table] == [str(execution.pk)]
    assert api.get("/api/v1/executions/export/?format=xml").status_code == 400
    assert api.get("/api/v1/executions/export/?status=nope").status_code == 400

    assert api.delete(f"/api/v1/executions/{running}/").status_code == 409
    bulk = api.post(
        "/api/v1/executions/bulk/", {"action": "cancel", "ids": [running]}, format="json"
    ).json()
    assert bulk["results"] == [{"id": running, "ok": True, "status": "cancelled"}]
    deleted = api.post(
        "/api/v1/executions/bulk/",
        {"action": "delete", "ids": [running, str(uuid.uuid4())]},
        format="json",
    ).json()["results"]
    assert [r["ok"] for r in deleted] == [True, False]
    assert not Execution.objects.filter(pk=running).exists()
    assert api.delete(base + "/").status_code == 204
    assert (
        api.post(
            "/api/v1/executions/bulk/", {"action": "explode", "ids": []}, format="json"
        ).status_code
        == 400
    )


def test_live_messages_reach_the_channel_layer(workflows, settings):
    """Events carry UUIDs (job, rerun_of); they must survive the channel layer's encoding."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from executions.live import publish_events

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    fanout, _ = workflows
    execution = start_execution(fanout)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"execution.{execution.pk}", channel)
    publish_events(execution.pk, list(execution.events.all()))
    message = async_to_sync(layer.receive)(channel)
    assert message["type"] == "execution.events"
    assert any(event["job"] for event in message["events"])
    assert isinstance(message["events"][0]["timestamp"], str)


def test_one_live_batch_sends_each_execution_its_own_events_and_row(workflows, settings):
    """The publisher merges what piled up: several executions in one batch, each group gets its
    own events (in order) and the list gets one row per execution, as the list API shows it."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from executions.live import publish_batch

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    fanout, _ = workflows
    runs = [start_execution(fanout) for _ in range(3)]
    listing = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("executions", listing)
    channels = {}
    for run in runs:
        channels[run.pk] = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(f"execution.{run.pk}", channels[run.pk])

    publish_batch({run.pk: list(run.events.order_by("id")) for run in runs})

    for run in runs:
        message = async_to_sync(layer.receive)(channels[run.pk])
        assert message["execution_id"] == str(run.pk)
        assert [e["id"] for e in message["events"]] == list(
            run.events.order_by("id").values_list("id", flat=True)
        )
        assert message["seq"] == message["events"][-1]["id"]
    rows = {}
    for _ in runs:
        message = async_to_sync(layer.receive)(listing)
        rows[message["execution"]["id"]] = message["execution"]
    assert set(rows) == {str(run.pk) for run in runs}
    for run in runs:
        row = rows[str(run.pk)]
        assert row["jobs_total"] == run.jobs.count() and row["status"] == "running"


def test_the_publisher_builds_and_sends_only_what_somebody_watches(workflows, settings):
    """Runs nobody watches cost the publisher one Redis round trip and no query; a watched run
    gets its events, and once the list is watched every run gets its row (real Redis layer)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from executions.live import publish_batch

    layer_settings = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {
        "default": {
            **layer_settings,
            "CONFIG": {**layer_settings["CONFIG"], "prefix": f"t{uuid.uuid4().hex[:12]}"},
        }
    }
    layer = get_channel_layer()
    fanout, _ = workflows
    watched, unwatched = start_execution(fanout), start_execution(fanout)

    def events_of(run):
        return list(run.events.order_by("id"))

    unwatched_events = events_of(unwatched)
    with CaptureQueriesContext(connection) as queries:
        publish_batch({unwatched.pk: unwatched_events})
    assert queries.captured_queries == []

    viewer = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"execution.{watched.pk}", viewer)
    batch = {watched.pk: events_of(watched), unwatched.pk: unwatched_events}
    with CaptureQueriesContext(connection) as queries:
        publish_batch(batch)
    assert len(queries.captured_queries) == 1, "the watched run only; no job counts for a list"
    assert str(unwatched.pk.hex) not in queries.captured_queries[0]["sql"]
    message = async_to_sync(layer.receive)(viewer)
    assert message["execution_id"] == str(watched.pk)
    assert [e["id"] for e in message["events"]] == [e.pk for e in events_of(watched)]

    listing = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("executions", listing)
    publish_batch({unwatched.pk: unwatched_events})
    row = async_to_sync(layer.receive)(listing)
    assert row["type"] == "execution.changed"
    assert row["execution"]["id"] == str(unwatched.pk)
    assert row["execution"]["jobs_total"] == unwatched.jobs.count()


def test_deletes_and_agents_going_offline_are_pushed_live(
    api, workflows, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.utils import timezone

    from agents.models import Agent
    from executions.advancing import cancel_execution
    from executions.sweeper import sweep

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("executions", channel)
    async_to_sync(layer.group_add)("agents", channel)
    fanout, _ = workflows
    execution = start_execution(fanout)
    cancel_execution(execution.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/executions/{execution.pk}/").status_code == 204

    def next_of_type(kind: str) -> dict:
        """The next message of `kind` on the channel, failing after 5 s instead of hanging."""
        import asyncio

        async def find() -> dict:
            while True:
                message = await asyncio.wait_for(layer.receive(channel), timeout=5)
                if message["type"] == kind:
                    return message

        return async_to_sync(find)()

    assert next_of_type("execution.deleted") == {
        "type": "execution.deleted",
        "execution_id": str(execution.pk),
    }

    agent, _ = register_agent(enrollment_token=None, name="fading", pools=["x"], labels={})
    silent_since = timezone.now() - timedelta(
        seconds=3 * settings.SWITCHYARD_HEARTBEAT_INTERVAL + 0.5
    )
    Agent.objects.filter(pk=agent.pk).update(last_heartbeat=silent_since)
    assert sweep()["agents_offline"] == 1
    assert next_of_type("agents.changed") == {"type": "agents.changed", "agent": "fading"}
