"""`POST /hooks/{key}`: signatures, replay window, idempotency, limits, payload formats, stored
deliveries (without secrets) and redelivery."""

from __future__ import annotations

import json
import math
import time

import pytest

from executions.models import Execution
from orchestrator.models import Trigger, WebhookDelivery
from orchestrator.secret_store import save_secret
from orchestrator.services import add_version, publish_version
from tests.triggers.conftest import SHELL, hmac_hex, post_hook, workflow_with

pytestmark = pytest.mark.django_db

SECRET = "s3cret-value"


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    if timestamp is None:
        return {"X-Switchyard-Signature": hmac_hex(secret, body)}
    return {
        "X-Switchyard-Signature": hmac_hex(secret, f"{timestamp}.".encode() + body),
        "X-Switchyard-Timestamp": str(timestamp),
    }


def test_signed_delivery_starts_a_run_with_trigger_info(client, webhook_trigger):
    body = json.dumps({"variables": {"service": "web"}, "ignored": 1}).encode()
    response = post_hook(client, webhook_trigger.key, body, **signed(body), x_request_id="req-42")
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["outcome"] == "started"
    execution = Execution.objects.get(pk=answer["execution"]["id"])
    assert execution.trigger_kind == "webhook"
    trigger = execution.trigger
    assert trigger["kind"] == "webhook"
    assert trigger["webhook"] == webhook_trigger.key
    assert trigger["request_id"] == "req-42"
    assert trigger["data"] == {"service": "web"}
    assert trigger["delivery_id"] == answer["delivery_id"]
    delivery = WebhookDelivery.objects.get(pk=answer["delivery_id"])
    assert (delivery.signature, delivery.outcome, delivery.status_code) == ("valid", "started", 201)
    assert delivery.execution == execution


def test_without_variables_the_whole_body_is_the_data(client, webhook_trigger):
    body = json.dumps({"ref": "main", "commits": [1, 2]}).encode()
    response = post_hook(client, webhook_trigger.key, body, **signed(body))
    execution = Execution.objects.get(pk=response.json()["execution"]["id"])
    assert execution.trigger["data"] == {"ref": "main", "commits": [1, 2]}
    # the delivery id is the request id when the sender sends none
    assert execution.trigger["request_id"] == response.json()["delivery_id"]


@pytest.mark.parametrize(
    ("headers", "reason", "verdict"),
    [
        ({}, "requires an X-Switchyard-Signature", "missing"),
        ({"X-Switchyard-Signature": "sha256=" + "0" * 64}, "does not match", "invalid"),
        ({"X-Switchyard-Signature": "garbage"}, "does not match", "invalid"),
    ],
)
def test_bad_or_missing_signature_is_401_and_starts_nothing(
    client, webhook_trigger, headers, reason, verdict
):
    response = post_hook(client, webhook_trigger.key, b'{"a": 1}', **headers)
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert not Execution.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.signature, delivery.outcome, delivery.status_code) == (verdict, "refused", 401)
    assert delivery.execution is None


def test_signature_over_another_body_is_refused(client, webhook_trigger):
    response = post_hook(client, webhook_trigger.key, b'{"a": 2}', **signed(b'{"a": 1}'))
    assert response.status_code == 401
    assert not Execution.objects.exists()


def test_timestamped_signature_covers_the_timestamp(client, webhook_trigger):
    body = b'{"a": 1}'
    now = int(time.time())
    response = post_hook(client, webhook_trigger.key, body, **signed(body, timestamp=now))
    assert response.status_code == 201, response.json()
    # the body-only signature is not valid once a timestamp is sent
    headers = {**signed(body), "X-Switchyard-Timestamp": str(now)}
    assert post_hook(client, webhook_trigger.key, body, **headers).status_code == 401


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_stale_timestamp_is_refused(client, webhook_trigger, age):
    body = b'{"a": 1}'
    # Rounded away from now: int() of a future stamp could land within the window.
    stamp = (math.floor if age > 0 else math.ceil)(time.time()) - age
    response = post_hook(client, webhook_trigger.key, body, **signed(body, timestamp=stamp))
    assert response.status_code == 401
    assert "replay" in response.json()["detail"]
    assert WebhookDelivery.objects.get().signature == "stale"
    assert not Execution.objects.exists()


def test_non_numeric_timestamp_is_refused(client, webhook_trigger):
    headers = {**signed(b"{}"), "X-Switchyard-Timestamp": "yesterday"}
    assert post_hook(client, webhook_trigger.key, b"{}", **headers).status_code == 401


def test_github_style_signature_header_is_accepted(client, webhook_trigger):
    body = b'{"zen": "ok"}'
    response = post_hook(
        client, webhook_trigger.key, body, x_hub_signature_256=hmac_hex(SECRET, body)
    )
    assert response.status_code == 201


def test_two_secrets_are_accepted_during_rotation(client, db):
    workflow = workflow_with(
        "rotating",
        [
            {
                "type": "webhook",
                "secret": "{{ secrets.hook_new }}",
                "secret_previous": "{{ secrets.hook_old }}",
            }
        ],
    )
    save_secret("hook_new", "new-secret", workflow=workflow)
    save_secret("hook_old", "old-secret")
    key = Trigger.objects.get(workflow=workflow).key
    body = b'{"x": 1}'
    assert post_hook(client, key, body, **signed(body, "new-secret")).status_code == 201
    assert post_hook(client, key, body, **signed(body, "old-secret")).status_code == 201
    assert post_hook(client, key, body, **signed(body, "other-secret")).status_code == 401


def test_secret_missing_from_the_store_is_503_not_open(client, db):
    workflow = workflow_with("unset", [{"type": "webhook", "secret": "{{ secrets.nowhere }}"}])
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, b"{}")
    assert response.status_code == 503
    assert "nowhere" in response.json()["detail"]
    assert not Execution.objects.exists()


def test_unsigned_trigger_accepts_unsigned_deliveries(client, db):
    workflow = workflow_with("open", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, b'{"a": 1}')
    assert response.status_code == 201
    assert WebhookDelivery.objects.get().signature == "not_required"


@pytest.mark.parametrize(
    "header", ["Idempotency-Key", "X-GitHub-Delivery", "X-Request-Id", "X-Gitlab-Event-UUID"]
)
def test_idempotency_key_returns_the_first_execution(client, webhook_trigger, header):
    body = b'{"a": 1}'
    headers = {**signed(body), header: "delivery-1"}
    first = post_hook(client, webhook_trigger.key, body, **headers)
    again = post_hook(client, webhook_trigger.key, body, **headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert again.json()["execution"]["id"] == first.json()["execution"]["id"]
    assert Execution.objects.count() == 1
    duplicate = WebhookDelivery.objects.get(pk=again.json()["delivery_id"])
    assert str(duplicate.duplicate_of_id) == first.json()["delivery_id"]
    other = post_hook(client, webhook_trigger.key, body, **{**headers, header: "delivery-2"})
    assert other.status_code == 201
    assert Execution.objects.count() == 2


def test_a_timestamped_delivery_replayed_without_a_delivery_id_starts_no_second_run(
    client, webhook_trigger
):
    """Inside the replay window, a byte-identical copy of a signed, timestamped delivery is a
    replay even when the sender sends no delivery id."""
    body = b'{"a": 1}'
    now = int(time.time())
    first = post_hook(client, webhook_trigger.key, body, **signed(body, timestamp=now))
    replayed = post_hook(client, webhook_trigger.key, body, **signed(body, timestamp=now))
    assert first.status_code == 201, first.json()
    assert replayed.status_code == 200
    assert replayed.json()["outcome"] == "duplicate"
    assert replayed.json()["execution"]["id"] == first.json()["execution"]["id"]

    later = post_hook(client, webhook_trigger.key, body, **signed(body, timestamp=now + 1))
    assert later.status_code == 201, "a new timestamp is a new delivery"
    untimed = [post_hook(client, webhook_trigger.key, body, **signed(body)) for _ in "ab"]
    assert [r.status_code for r in untimed] == [201, 201], "no timestamp: the body may recur"
    assert Execution.objects.count() == 4


def test_refused_delivery_does_not_claim_its_idempotency_key(client, webhook_trigger):
    body = b"not json"
    headers = {**signed(body), "Idempotency-Key": "k1"}
    assert post_hook(client, webhook_trigger.key, body, **headers).status_code == 400
    good = b'{"ok": true}'
    retry = post_hook(client, webhook_trigger.key, good, **signed(good), idempotency_key="k1")
    assert retry.status_code == 201


def test_idempotency_is_checked_after_the_signature(client, webhook_trigger):
    body = b'{"a": 1}'
    first = post_hook(client, webhook_trigger.key, body, **signed(body), idempotency_key="k")
    assert first.status_code == 201
    forged = post_hook(client, webhook_trigger.key, body, idempotency_key="k")
    assert forged.status_code == 401
    assert "execution" not in forged.json()


@pytest.mark.parametrize("body", [b"not json", b"{'single': 'quotes'}", b'{"a": NaN}', b"[1,"])
def test_non_json_body_is_400(client, db, body):
    workflow = workflow_with("plain", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, body, content_type="text/plain")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "body", [b'{"a": "nul\\u0000"}', b'{"\\u0000": 1}', b'{"big": 1e999}', b"[" * 100000]
)
def test_json_that_cannot_be_stored_is_400_not_500(client, db, body):
    workflow = workflow_with("odd", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, body)
    assert response.status_code == 400, response.content
    assert not Execution.objects.exists()


def test_empty_body_is_an_empty_object(client, db):
    workflow = workflow_with("ping", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, b"")
    assert response.status_code == 201
    assert Execution.objects.get().trigger["data"] == {}


def test_body_over_the_limit_is_413(client, db, settings):
    settings.SWITCHYARD_WEBHOOK_MAX_BODY_BYTES = 1000
    workflow = workflow_with("big", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    exactly = json.dumps({"pad": "x" * (1000 - 11)}).encode()
    assert len(exactly) == 1000
    assert post_hook(client, key, exactly).status_code == 201
    too_big = json.dumps({"pad": "x" * 1000}).encode()
    response = post_hook(client, key, too_big)
    assert response.status_code == 413
    assert "1000-byte limit" in response.json()["detail"]
    delivery = WebhookDelivery.objects.get(status_code=413)
    assert delivery.body == ""
    assert delivery.body_size == len(too_big)
    assert Execution.objects.count() == 1


def test_default_limit_is_one_mebibyte(client, db, settings):
    assert settings.SWITCHYARD_WEBHOOK_MAX_BODY_BYTES == 1 << 20
    workflow = workflow_with("mib", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    assert post_hook(client, key, b" " * ((1 << 20) + 1)).status_code == 413


def test_deactivated_workflow_answers_409(client, webhook_trigger):
    workflow = webhook_trigger.workflow
    workflow.is_active = False
    workflow.save()
    body = b"{}"
    response = post_hook(client, webhook_trigger.key, body, **signed(body))
    assert response.status_code == 409
    assert "deactivated" in response.json()["detail"]
    assert not Execution.objects.exists()
    assert WebhookDelivery.objects.get().reason == response.json()["detail"]


def test_trigger_dropped_from_the_published_version_answers_409(client, db):
    workflow = workflow_with("dropped", [{"type": "webhook"}])
    key = Trigger.objects.get(workflow=workflow).key
    add_version(workflow, {"slug": "dropped", "nodes": [SHELL]})
    assert post_hook(client, key, b"{}").status_code == 201  # draft: still the old triggers
    publish_version(workflow)
    response = post_hook(client, key, b"{}")
    assert response.status_code == 409
    assert "no longer in the published version" in response.json()["detail"]


def test_unknown_key_is_404_and_get_is_405(client, webhook_trigger):
    assert post_hook(client, "nope", b"{}").status_code == 404
    assert client.get(f"/hooks/{webhook_trigger.key}").status_code == 405
    assert not WebhookDelivery.objects.exists()


def test_stored_headers_hold_no_secrets(client, webhook_trigger):
    body = b'{"a": 1}'
    response = post_hook(
        client,
        webhook_trigger.key,
        body,
        **signed(body),
        authorization="Bearer very-private",
        cookie="sessionid=abc123",
        x_api_key="key-material",
        x_gitlab_token="gitlab-token",
        x_echo=f"prefix-{SECRET}-suffix",
        idempotency_key="idem-1",
        user_agent="GitHub-Hookshot/1",
    )
    assert response.status_code == 201
    delivery = WebhookDelivery.objects.get()
    headers = delivery.headers
    lowered = {name.lower(): value for name, value in headers.items()}
    assert "authorization" not in lowered
    assert "cookie" not in lowered
    assert lowered["x-switchyard-signature"] == "[redacted]"
    assert lowered["x-api-key"] == "[redacted]"
    assert lowered["x-gitlab-token"] == "[redacted]"
    assert lowered["x-echo"] == "prefix-***-suffix"
    assert lowered["idempotency-key"] == "idem-1"
    assert lowered["user-agent"] == "GitHub-Hookshot/1"
    stored = json.dumps(headers)
    for value in ("very-private", "abc123", "key-material", "gitlab-token", SECRET):
        assert value not in stored
    signature = signed(body)["X-Switchyard-Signature"]
    assert signature.split("=", 1)[1] not in stored


def test_secret_value_in_the_body_is_masked_in_the_stored_delivery(client, webhook_trigger):
    body = json.dumps({"oops": SECRET}).encode()
    assert post_hook(client, webhook_trigger.key, body, **signed(body)).status_code == 201
    assert SECRET not in WebhookDelivery.objects.get().body


def test_condition_filters_deliveries_without_a_run(client, db):
    workflow = workflow_with(
        "filtered", [{"type": "webhook", "if": "{{ trigger.data.status == 'firing' }}"}]
    )
    key = Trigger.objects.get(workflow=workflow).key
    resolved = post_hook(client, key, {"status": "resolved"})
    assert resolved.status_code == 200
    assert resolved.json()["outcome"] == "filtered"
    assert resolved.json()["execution"] is None
    assert post_hook(client, key, {"status": "firing"}).status_code == 201
    assert Execution.objects.count() == 1


def test_trigger_inputs_are_rendered_from_the_payload(client, db):
    workflow = workflow_with(
        "mapped",
        [{"type": "webhook", "inputs": {"service": "{{ trigger.data.service }}", "count": 3}}],
        inputs={"service": {"type": "string", "required": True}, "count": "integer"},
    )
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, {"service": "api"})
    assert response.status_code == 201
    assert Execution.objects.get().inputs == {"service": "api", "count": 3}
    missing = post_hook(client, key, {"other": 1})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["path"].startswith("inputs.service")


def test_invalid_inputs_are_400_with_field_paths(client, db):
    workflow = workflow_with(
        "strict",
        [{"type": "webhook", "inputs": {"count": "{{ trigger.data.count }}"}}],
        inputs={"count": {"type": "integer", "required": True}},
    )
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, {"count": "many"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "inputs.count"
    assert not Execution.objects.exists()


ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="DiskFull"}',
    "status": "firing",
    "receiver": "switchyard",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db-1", "severity": "critical"},
            "annotations": {"summary": "disk 95% full"},
            "startsAt": "2024-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "abc",
        },
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db-2", "severity": "critical"},
            "annotations": {"summary": "disk 97% full"},
            "fingerprint": "def",
        },
    ],
}


def test_alertmanager_payload_starts_one_run_with_every_alert(client, db):
    workflow = workflow_with(
        "alerts",
        [
            {
                "type": "webhook",
                "inputs": {"host": "{{ trigger.data.alerts[1].labels.instance }}"},
            }
        ],
        inputs={"host": "string"},
    )
    key = Trigger.objects.get(workflow=workflow).key
    response = post_hook(client, key, ALERTMANAGER)
    assert response.status_code == 201
    execution = Execution.objects.get()
    trigger = execution.trigger
    assert trigger["format"] == "alertmanager"
    assert trigger["data"]["alerts"][0]["labels"]["instance"] == "db-1"
    assert trigger["data"]["alerts"][0]["annotations"]["summary"] == "disk 95% full"
    assert trigger["event"]["type"] == "alertmanager.firing"
    assert trigger["incident_id"] == ALERTMANAGER["groupKey"]
    assert execution.inputs == {"host": "db-2"}
    assert WebhookDelivery.objects.get().payload_format == "alertmanager"


def test_pagerduty_payload_becomes_trigger_data(client, db):
    workflow = workflow_with(
        "paged", [{"type": "webhook", "if": "{{ event.type == 'incident.triggered' }}"}]
    )
    key = Trigger.objects.get(workflow=workflow).key
    payload = {
        "event": {
            "id": "01DEN",
            "event_type": "incident.triggered",
            "resource_type": "incident",
            "occurred_at": "2024-01-01T00:00:00Z",
            "data": {"id": "PGR0VU2", "title": "DB down", "urgency": "high"},
        }
    }
    response = post_hook(client, key, payload)
    assert response.status_code == 201
    trigger = Execution.objects.get().trigger
    assert trigger["format"] == "pagerduty"
    assert trigger["data"] == payload["event"]["data"]
    assert trigger["event_type"] == "incident.triggered"
    assert trigger["incident_id"] == "PGR0VU2"
    acknowledged = {"event": {**payload["event"], "event_type": "incident.acknowledged"}}
    assert post_hook(client, key, acknowledged).json()["outcome"] == "filtered"


def deliveries_url(trigger: Trigger) -> str:
    return f"/api/v1/workflows/{trigger.workflow.slug}/triggers/{trigger.pk}/deliveries/"


def test_deliveries_are_listed_per_trigger(client, api, webhook_trigger):
    body = b'{"n": 1}'
    post_hook(client, webhook_trigger.key, body, **signed(body))
    post_hook(client, webhook_trigger.key, body)
    listed = api.get(deliveries_url(webhook_trigger))
    assert listed.status_code == 200
    results = listed.json()["results"]
    assert [d["status_code"] for d in results] == [401, 201]
    assert results[1]["execution"]["status"] in ("running", "pending")
    assert results[1]["body"] == '{"n": 1}'
    assert results[0]["signature"] == "missing"
    one = api.get(deliveries_url(webhook_trigger) + f"{results[1]['id']}/")
    assert one.status_code == 200
    assert one.json() == results[1]
    assert api.get(deliveries_url(webhook_trigger) + "not-a-uuid/").status_code == 404
    other = workflow_with("other", [{"type": "webhook"}])
    other_trigger = Trigger.objects.get(workflow=other)
    assert api.get(deliveries_url(other_trigger) + f"{results[1]['id']}/").status_code == 404
    assert (
        api.get(f"/api/v1/workflows/other/triggers/{webhook_trigger.pk}/deliveries/").status_code
        == 404
    )


def test_deliveries_need_authentication(client, webhook_trigger):
    assert client.get(deliveries_url(webhook_trigger)).status_code == 401


def test_redelivery_starts_a_new_run(client, api, admin_user, webhook_trigger):
    body = b'{"variables": {"n": 1}}'
    first = post_hook(client, webhook_trigger.key, body, **signed(body), idempotency_key="once")
    url = deliveries_url(webhook_trigger) + f"{first.json()['delivery_id']}/redeliver/"
    response = api.post(url)
    assert response.status_code == 201, response.json()
    redelivery = response.json()
    assert redelivery["redelivery_of"] == first.json()["delivery_id"]
    assert redelivery["redelivered_by"] == admin_user.username
    assert redelivery["signature"] == "redelivery"
    assert redelivery["execution"]["id"] != first.json()["execution"]["id"]
    execution = Execution.objects.get(pk=redelivery["execution"]["id"])
    assert execution.trigger["data"] == {"n": 1}
    assert execution.trigger["redelivery_of"] == first.json()["delivery_id"]
    assert execution.trigger["user"] == admin_user.username
    # a second redelivery of the same delivery starts yet another run (no de-duplication)
    assert api.post(url).status_code == 201
    assert Execution.objects.count() == 3


def test_unauthenticated_or_refused_deliveries_cannot_be_redelivered(client, api, webhook_trigger):
    forged = post_hook(client, webhook_trigger.key, b'{"evil": 1}')
    url = deliveries_url(webhook_trigger) + f"{forged.json()['delivery_id']}/redeliver/"
    response = api.post(url)
    assert response.status_code == 409
    assert "not authenticated" in response.json()["detail"]
    assert not Execution.objects.exists()


def test_redelivery_to_a_deactivated_workflow_is_409(client, api, webhook_trigger):
    body = b"{}"
    first = post_hook(client, webhook_trigger.key, body, **signed(body))
    webhook_trigger.workflow.is_active = False
    webhook_trigger.workflow.save()
    url = deliveries_url(webhook_trigger) + f"{first.json()['delivery_id']}/redeliver/"
    response = api.post(url)
    assert response.status_code == 409
    assert "deactivated" in response.json()["detail"]
