"""Webhook fuzzing: hostile deliveries never start a run and never cause a 5xx; a delivery id
starts exactly one run however often (and however concurrently) it is replayed.

Runs against the real view and PostgreSQL in-process (`/hooks/{key}`); the HMAC is computed here,
independently of `orchestrator.triggers`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executions.models import Execution
from orchestrator.models import Trigger, WebhookDelivery
from orchestrator.secret_store import save_secret
from orchestrator.services import create_workflow

SECRET = "fuzz-hook-secret-4b1d"
WAIT = {"id": "hold", "type": "wait", "duration": "1h"}


def signature(body: bytes, secret: str = SECRET, timestamp: str | None = None) -> str:
    message = f"{timestamp}.".encode() + body if timestamp is not None else body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def deliver(client: Client, key: str, body: bytes, headers: dict[str, str]):
    return client.post(f"/hooks/{key}", data=body, content_type="application/json", headers=headers)


@pytest.fixture
def hook(db) -> Trigger:
    workflow = create_workflow(
        {
            "slug": "fuzzed-hook",
            "nodes": [WAIT],
            "triggers": [{"type": "webhook", "secret": "{{ secrets.fuzz_hook }}"}],
        }
    )
    save_secret("fuzz_hook", SECRET, workflow=workflow)
    return Trigger.objects.get(workflow=workflow, kind="webhook")


def assert_error_shape(response) -> None:
    assert response.status_code < 500, response.content[:300]
    body = response.json()
    assert isinstance(body["detail"], str) and isinstance(body["errors"], list)


BODIES = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    ).map(lambda value: json.dumps(value).encode()),
)
HEX = st.text(alphabet="0123456789abcdef", min_size=0, max_size=70)
FORGED_SIGNATURES = st.one_of(
    st.none(),
    st.text(max_size=80).filter(lambda s: "\n" not in s and "\r" not in s),
    HEX.map(lambda h: f"sha256={h}"),
    st.just("sha256="),
    st.just("sha1=" + "0" * 40),
)


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, forged=FORGED_SIGNATURES, wrong_secret=st.booleans(), ts_skew=st.integers())
def test_forged_signatures_never_start_a_run(hook, body, forged, wrong_secret, ts_skew):
    headers: dict[str, str] = {}
    if wrong_secret:
        timestamp = str(int(time.time()) + ts_skew % 100)
        headers["X-Switchyard-Timestamp"] = timestamp
        headers["X-Switchyard-Signature"] = signature(body, "not-" + SECRET, timestamp)
    elif forged is not None:
        headers["X-Switchyard-Signature"] = forged
    response = deliver(Client(), hook.key, body, headers)
    assert_error_shape(response)
    assert response.status_code in (401, 413), response.content[:300]
    assert not Execution.objects.exists()


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, age=st.integers(min_value=330, max_value=10**9), future=st.booleans())
def test_correctly_signed_but_stale_or_future_timestamps_are_refused(hook, body, age, future):
    """At least 30 s outside the 300 s window: a timestamp 301 s ahead is inside the window
    again once a loaded machine takes a second to deliver it (a flaky failure in CI)."""
    timestamp = str(int(time.time()) + (age if future else -age))
    headers = {
        "X-Switchyard-Timestamp": timestamp,
        "X-Switchyard-Signature": signature(body, timestamp=timestamp),
    }
    response = deliver(Client(), hook.key, body, headers)
    assert_error_shape(response)
    assert response.status_code == 401
    assert not Execution.objects.exists()


NESTED_LIST = b"[" * 200_000 + b"]" * 200_000
NESTED_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, status",
    [
        pytest.param(b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}', 413, id="10MB"),
        pytest.param(NESTED_LIST[: 1 << 19] + NESTED_LIST[-(1 << 19) :], 400, id="deep-list"),
        pytest.param(NESTED_OBJECT[:500_000] + NESTED_OBJECT[-100_001:], 400, id="deep-object"),
        pytest.param(b'{"name": "\xff\xfe\xc3\x28"}', 400, id="invalid-utf8"),
        pytest.param(b"\xef\xbb\xbf{}", 201, id="utf8-bom-accepted"),
        pytest.param(b'{"a": "\\ud800"}', 400, id="lone-surrogate"),
        pytest.param(b'{"a": 1, "a": 2}' * 1, 201, id="duplicate-keys-last-wins"),
    ],
)
def test_correctly_signed_hostile_bodies(hook, body, status):
    response = deliver(Client(), hook.key, body, {"X-Switchyard-Signature": signature(body)})
    if status >= 400:
        assert_error_shape(response)
    assert response.status_code == status, response.content[:300]
    assert Execution.objects.count() == (1 if status == 201 else 0)
    assert WebhookDelivery.objects.filter(trigger=hook).count() == 1


@pytest.mark.django_db
def test_missing_or_empty_signature_headers(hook):
    body = b'{"a": 1}'
    for headers in (
        {},
        {"X-Switchyard-Signature": ""},
        {"X-Switchyard-Signature": signature(body) + "00"},
        {"X-Switchyard-Signature": signature(body), "X-Switchyard-Timestamp": "now"},
        {"X-Switchyard-Signature": signature(body), "X-Switchyard-Timestamp": str(time.time())},
        {"X-Hub-Signature-256": signature(body + b" ")},
    ):
        response = deliver(Client(), hook.key, body, headers)
        assert_error_shape(response)
        assert response.status_code in (400, 401), headers
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_sequential_replays_of_one_delivery_start_one_run(hook):
    body = b'{"deploy": "api"}'
    timestamp = str(int(time.time()))
    headers = {
        "X-Switchyard-Signature": signature(body, timestamp=timestamp),
        "X-Switchyard-Timestamp": timestamp,
        "X-GitHub-Delivery": "4f2c-delivery",
    }
    statuses = [deliver(Client(), hook.key, body, headers).status_code for _ in range(20)]
    assert statuses == [201] + [200] * 19
    assert Execution.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_delivery_start_one_run(hook):
    body = b'{"deploy": "web"}'
    headers = {"X-Switchyard-Signature": signature(body), "Idempotency-Key": "same-delivery"}
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []

    def replay() -> None:
        try:
            barrier.wait()
            statuses.append(deliver(Client(), hook.key, body, headers).status_code)
        finally:
            connection.close()

    workers = [threading.Thread(target=replay) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(statuses) == [200] * (threads - 1) + [201]
    assert Execution.objects.count() == 1
    started = WebhookDelivery.objects.filter(trigger=hook, execution__isnull=False)
    assert {d.execution_id for d in started} == {Execution.objects.get().pk}
