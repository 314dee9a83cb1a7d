"""The trigger and event endpoints are in the OpenAPI schema, and their documented shapes
match what the views return."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

from orchestrator.models import Trigger
from orchestrator.services import create_workflow
from tests.triggers.conftest import SHELL, post_hook

PATHS = {
    "/api/v1/workflows/{slug}/triggers/": {"get"},
    "/api/v1/workflows/{slug}/triggers/{trigger_id}/regenerate-key/": {"post"},
    "/api/v1/workflows/{slug}/triggers/{trigger_id}/deliveries/": {"get"},
    "/api/v1/workflows/{slug}/triggers/{trigger_id}/deliveries/{delivery_id}/": {"get"},
    "/api/v1/workflows/{slug}/triggers/{trigger_id}/deliveries/{delivery_id}/redeliver/": {"post"},
    "/api/v1/events/": {"get", "post"},
    "/api/v1/events/{event_id}/": {"get"},
}


@pytest.fixture(scope="module")
def schema() -> dict:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache
    return generated


def properties(schema: dict, path: str, method: str, code: str) -> set[str]:
    content = schema["paths"][path][method]["responses"][code]["content"]["application/json"]
    ref = content["schema"]["$ref"].rsplit("/", 1)[1]
    return set(schema["components"]["schemas"][ref]["properties"])


def component_properties(schema: dict, name: str) -> set[str]:
    return set(schema["components"]["schemas"][name]["properties"])


def test_endpoints_are_documented_with_errors(schema):
    for path, methods in PATHS.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), path
    redeliver = schema["paths"][
        "/api/v1/workflows/{slug}/triggers/{trigger_id}/deliveries/{delivery_id}/redeliver/"
    ]["post"]
    assert {"201", "400", "401", "404", "409"} <= set(redeliver["responses"])
    hook = schema["paths"]["/hooks/{key}"]["post"]
    assert hook.get("security", []) in ([], [{}])  # no token: the key (and HMAC) authenticate
    assert {"200", "201", "400", "401", "404", "409", "413", "503"} <= set(hook["responses"])


@pytest.mark.django_db
def test_documented_shapes_match_real_responses(api, client, schema):
    create_workflow(
        {
            "slug": "shapes",
            "nodes": [SHELL],
            "triggers": [
                {"type": "webhook"},
                {"type": "cron", "cron": "@hourly"},
                {"type": "event", "event": "x"},
            ],
        }
    )
    webhook = Trigger.objects.get(kind="webhook")
    started = post_hook(client, webhook.key, b"{}")
    delivery_id = started.json()["delivery_id"]
    assert set(started.json()) == component_properties(schema, "HookResult")
    assert set(started.json()["execution"]) == component_properties(schema, "HookExecution")
    refused = post_hook(client, webhook.key, b"nope")
    assert refused.status_code == 400
    assert set(refused.json()) == component_properties(schema, "WebhookError")

    listed = api.get("/api/v1/workflows/shapes/triggers/").json()
    assert set(listed) == properties(schema, "/api/v1/workflows/{slug}/triggers/", "get", "200")
    for trigger in listed["results"]:
        assert set(trigger) == component_properties(schema, "Trigger")
    assert set(listed["results"][0]["webhook"]) == component_properties(schema, "WebhookInfo")
    assert set(listed["results"][1]["cron"]) == component_properties(schema, "CronInfo")

    base = f"/api/v1/workflows/shapes/triggers/{webhook.pk}/deliveries/"
    page = api.get(base).json()
    assert set(page) == {"results", "next", "previous"}
    assert set(page["results"][0]) == component_properties(schema, "Delivery")
    redelivered = api.post(f"{base}{delivery_id}/redeliver/")
    assert redelivered.status_code == 201
    assert set(redelivered.json()) == component_properties(schema, "Delivery")
    assert set(redelivered.json()["execution"]) == component_properties(schema, "ExecutionRef")

    event = api.post("/api/v1/events/", {"type": "x"}, format="json").json()
    assert set(event) == properties(schema, "/api/v1/events/", "post", "201")
    assert set(event["matches"][0]) == component_properties(schema, "IncidentEventMatch")
