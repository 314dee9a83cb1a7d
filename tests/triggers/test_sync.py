"""Trigger rows follow the published version: keys stay stable across republishing, drafts do
not change them, removed entries are deactivated; the triggers API and key regeneration."""

from __future__ import annotations

import pytest

from orchestrator.models import Trigger
from orchestrator.services import add_version, create_workflow, publish_version
from tests.triggers.conftest import SHELL, post_hook, workflow_with

pytestmark = pytest.mark.django_db


def definition(*triggers: dict) -> dict:
    return {"slug": "synced", "nodes": [SHELL], "triggers": list(triggers)}


WEBHOOK = {"type": "webhook"}
CRON = {"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}
EVENT = {"type": "event", "event": "incident.*"}


def rows(workflow) -> dict[tuple[int, str], Trigger]:
    return {(t.position, t.kind): t for t in Trigger.objects.filter(workflow=workflow)}


def test_publishing_materialises_webhook_cron_and_event_triggers():
    workflow = create_workflow(definition({"type": "manual"}, WEBHOOK, CRON, EVENT))
    found = rows(workflow)
    assert set(found) == {(1, "webhook"), (2, "cron"), (3, "event")}
    webhook = found[(1, "webhook")]
    assert webhook.is_active
    assert len(webhook.key) >= 32
    assert found[(2, "cron")].key is None
    assert found[(2, "cron")].config == CRON
    assert found[(3, "event")].config == EVENT


def test_republishing_keeps_webhook_keys_and_drafts_change_nothing():
    workflow = create_workflow(definition(WEBHOOK, CRON))
    key = rows(workflow)[(0, "webhook")].key
    add_version(workflow, definition({"type": "webhook", "secret": "{{ secrets.s }}"}))
    assert rows(workflow)[(0, "webhook")].config == WEBHOOK  # a draft is not live
    publish_version(workflow)
    republished = rows(workflow)[(0, "webhook")]
    assert republished.key == key
    assert republished.config["secret"] == "{{ secrets.s }}"


def test_removed_entries_are_deactivated_and_come_back_with_their_key():
    workflow = create_workflow(definition(WEBHOOK, CRON))
    key = rows(workflow)[(0, "webhook")].key
    add_version(workflow, definition(CRON))
    publish_version(workflow)
    found = rows(workflow)
    assert not found[(0, "webhook")].is_active
    assert found[(0, "cron")].is_active
    assert not found[(1, "cron")].is_active
    publish_version(workflow, 1)  # roll back
    found = rows(workflow)
    assert found[(0, "webhook")].is_active
    assert found[(0, "webhook")].key == key
    assert found[(1, "cron")].is_active
    assert not found[(0, "cron")].is_active


def test_webhook_keys_are_unique_and_unguessable():
    keys = {Trigger.objects.get(workflow=workflow_with(f"w{i}", [WEBHOOK])).key for i in range(20)}
    assert len(keys) == 20
    assert all(len(key) == 32 for key in keys)  # token_urlsafe(24)


def test_triggers_api_lists_webhook_urls_and_recent_deliveries(api, client, settings):
    settings.SWITCHYARD_BASE_URL = "https://switchyard.example.com"
    workflow = create_workflow(
        definition(
            {"type": "webhook", "secret": "{{ secrets.hook }}", "name": "github"}, CRON, EVENT
        )
    )
    key = rows(workflow)[(0, "webhook")].key
    post_hook(client, key, b"{}")  # refused (no signature, secret not stored), still listed
    response = api.get("/api/v1/workflows/synced/triggers/")
    assert response.status_code == 200
    webhook, cron, event = response.json()["results"]
    assert webhook["kind"] == "webhook"
    assert webhook["name"] == "github"
    assert webhook["webhook"]["url"] == f"https://switchyard.example.com/hooks/{key}"
    assert webhook["webhook"]["path"] == f"/hooks/{key}"
    assert webhook["webhook"]["secret"] == "hook"
    assert webhook["webhook"]["secret_previous"] is None
    [delivery] = webhook["webhook"]["recent_deliveries"]
    assert delivery["status_code"] == 503
    assert cron["cron"]["timezone"] == "Europe/Berlin"
    assert len(cron["cron"]["next_fires"]) == 5
    assert event["event"] == {"event": "incident.*", "source": None, "condition": None}
    assert api.get("/api/v1/workflows/nope/triggers/").status_code == 404


def test_inactive_triggers_are_listed_on_request(api):
    workflow = create_workflow(definition(WEBHOOK))
    add_version(workflow, definition(CRON))
    publish_version(workflow)
    assert [t["kind"] for t in api.get("/api/v1/workflows/synced/triggers/").json()["results"]] == [
        "cron"
    ]
    everything = api.get("/api/v1/workflows/synced/triggers/?include_inactive=true").json()
    assert {(t["kind"], t["is_active"]) for t in everything["results"]} == {
        ("webhook", False),
        ("cron", True),
    }


def test_regenerate_key_replaces_the_url(api, client):
    workflow = create_workflow(definition(WEBHOOK, CRON))
    trigger = rows(workflow)[(0, "webhook")]
    old_key = trigger.key
    response = api.post(f"/api/v1/workflows/synced/triggers/{trigger.pk}/regenerate-key/")
    assert response.status_code == 200
    new_key = response.json()["webhook"]["key"]
    assert new_key != old_key
    assert response.json()["webhook"]["key_rotated_at"] is not None
    assert post_hook(client, old_key, b"{}").status_code == 404
    assert post_hook(client, new_key, b"{}").status_code == 201
    # the key survives the next publish
    add_version(workflow, definition(WEBHOOK, CRON))
    publish_version(workflow)
    assert rows(workflow)[(0, "webhook")].key == new_key


def test_regenerate_key_of_a_non_webhook_trigger_is_409(api):
    workflow = create_workflow(definition(CRON))
    trigger = rows(workflow)[(0, "cron")]
    response = api.post(f"/api/v1/workflows/synced/triggers/{trigger.pk}/regenerate-key/")
    assert response.status_code == 409
    assert api.post("/api/v1/workflows/synced/triggers/999999/regenerate-key/").status_code == 404


def test_regenerate_key_needs_authentication(client):
    workflow = create_workflow(definition(WEBHOOK))
    trigger = rows(workflow)[(0, "webhook")]
    url = f"/api/v1/workflows/synced/triggers/{trigger.pk}/regenerate-key/"
    assert client.post(url).status_code == 401
