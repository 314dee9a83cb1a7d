"""`POST /api/v1/events/`: matching published, active event triggers, `if:` conditions,
dedup_key de-duplication, trigger info, and the events list."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from executions.models import Execution
from orchestrator.models import Event
from orchestrator.services import add_version
from orchestrator.triggers import ingest_event
from tests.triggers.conftest import SHELL, WAIT, workflow_with

CRITICAL = "{{ event.data.severity == 'critical' }}"


def send(api, **body):
    return api.post("/api/v1/events/", body, format="json")


@pytest.fixture
def responders(db):
    critical = workflow_with(
        "page-oncall", [{"type": "event", "event": "incident.created", "if": CRITICAL}]
    )
    anything = workflow_with("log-incidents", [{"type": "event", "event": "incident.*"}])
    other = workflow_with("deploys", [{"type": "event", "event": "deploy.finished"}])
    return critical, anything, other


def test_event_starts_every_matching_workflow(api, responders):
    response = send(
        api,
        type="incident.created",
        source="grafana",
        dedup_key="inc-1",
        data={"severity": "critical", "incident_id": "INC-7", "id": "ignored"},
    )
    assert response.status_code == 201, response.json()
    event = response.json()
    assert event["duplicate"] is False
    assert event["incident_id"] == "INC-7"
    assert sorted(e["workflow"] for e in event["executions"]) == ["log-incidents", "page-oncall"]
    assert {m["workflow"]: m["started"] for m in event["matches"]} == {
        "log-incidents": True,
        "page-oncall": True,
    }
    stored = Event.objects.get()
    assert stored.executions.count() == 2
    execution = Execution.objects.get(workflow__slug="page-oncall")
    assert execution.trigger_kind == "event"
    info = execution.trigger
    assert info["kind"] == "event"
    assert info["event_type"] == "incident.created"
    assert info["incident_id"] == "INC-7"
    assert info["event"]["data"]["severity"] == "critical"
    assert info["event"]["source"] == "grafana"
    assert info["event_id"] == event["id"]


def test_false_condition_starts_nothing_and_says_why(api, responders):
    event = send(api, type="incident.created", data={"severity": "minor", "id": 42}).json()
    assert [e["workflow"] for e in event["executions"]] == ["log-incidents"]
    assert event["incident_id"] == "42"
    [skipped] = [m for m in event["matches"] if m["workflow"] == "page-oncall"]
    assert skipped["started"] is False
    assert "False" in skipped["reason"]


def test_condition_on_a_missing_field_is_false_not_an_error(api, responders):
    event = send(api, type="incident.created", data={}).json()
    [skipped] = [m for m in event["matches"] if m["workflow"] == "page-oncall"]
    assert skipped["started"] is False
    assert "severity" in skipped["reason"]


def test_dedup_key_returns_the_same_event_without_new_runs(api, responders):
    body = {"type": "incident.created", "dedup_key": "inc-9", "data": {"severity": "critical"}}
    first = send(api, **body)
    again = send(api, **{**body, "data": {"severity": "minor"}})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    assert again.json()["data"] == {"severity": "critical"}
    assert {e["id"] for e in again.json()["executions"]} == {
        e["id"] for e in first.json()["executions"]
    }
    assert Event.objects.count() == 1
    assert Execution.objects.count() == 2
    assert send(api, **{**body, "dedup_key": "inc-10"}).status_code == 201
    assert Execution.objects.count() == 4


def test_events_without_dedup_key_are_never_merged(api, responders):
    send(api, type="deploy.finished")
    send(api, type="deploy.finished", dedup_key="")
    assert Event.objects.count() == 2
    assert Execution.objects.filter(workflow__slug="deploys").count() == 2


def test_only_published_active_workflows_are_started(api, responders):
    critical, anything, _ = responders
    anything.is_active = False
    anything.save()
    # a draft version adding an event trigger is not live
    add_version(
        critical,
        {
            "slug": "page-oncall",
            "nodes": [SHELL],
            "triggers": [{"type": "event", "event": "audit.*"}],
        },
    )
    assert send(api, type="audit.login").json()["executions"] == []
    event = send(api, type="incident.created", data={"severity": "critical"}).json()
    assert [e["workflow"] for e in event["executions"]] == ["page-oncall"]


def test_source_pattern_and_inputs(api, db):
    workflow_with(
        "from-pd",
        [
            {
                "type": "event",
                "event": "incident.*",
                "source": "pagerduty",
                "inputs": {"title": "{{ trigger.data.title }}"},
            }
        ],
        inputs={"title": {"type": "string", "required": True}},
    )
    assert send(api, type="incident.created", source="grafana").json()["executions"] == []
    event = send(api, type="incident.created", source="pagerduty", data={"title": "DB"}).json()
    assert len(event["executions"]) == 1
    assert Execution.objects.get().inputs == {"title": "DB"}
    bad = send(api, type="incident.created", source="pagerduty", data={}).json()
    assert bad["executions"] == []
    assert "title" in bad["matches"][0]["reason"]


def test_invalid_events_are_400(api, db):
    assert send(api, source="x").status_code == 400
    assert send(api, type="x" * 201).status_code == 400
    response = send(api, type="t", data={"a": "nul\u0000"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "data.a"
    assert api.post("/api/v1/events/", "nope", content_type="text/plain").status_code == 415


def test_events_need_authentication(client, db):
    assert client.post("/api/v1/events/", {"type": "x"}).status_code == 401
    assert client.get("/api/v1/events/").status_code == 401


def test_events_list_and_detail(api, responders):
    send(api, type="incident.created", data={"severity": "critical"})
    send(api, type="deploy.finished", source="ci")
    listed = api.get("/api/v1/events/").json()
    assert [e["type"] for e in listed["results"]] == ["deploy.finished", "incident.created"]
    assert listed["next"] is None
    only = api.get("/api/v1/events/?type=incident.created").json()["results"]
    assert len(only) == 1
    assert len(only[0]["executions"]) == 2
    assert [e["source"] for e in api.get("/api/v1/events/?source=ci").json()["results"]] == ["ci"]
    one = api.get(f"/api/v1/events/{only[0]['id']}/")
    assert one.status_code == 200
    assert one.json()["id"] == only[0]["id"]
    assert api.get("/api/v1/events/not-a-uuid/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_with_one_dedup_key_start_runs_once():
    workflow_with("once", [{"type": "event", "event": "alert"}], nodes=[WAIT])
    barrier = threading.Barrier(2)
    outcomes: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            barrier.wait(timeout=10)
            event, created = ingest_event(type="alert", dedup_key="same", data={"n": 1})
            outcomes.append((str(event.pk), created))
        except BaseException as error:  # re-raised below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(created for _, created in outcomes) == [False, True]
    assert len({event_id for event_id, _ in outcomes}) == 1
    assert Event.objects.count() == 1
    assert Execution.objects.count() == 1
