"""GET /metrics: Prometheus text with values computed from PostgreSQL and Redis."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Agent
from executions.models import Job
from orchestrator import ops
from tests.ops import factories

pytestmark = pytest.mark.django_db


def scrape(client: Client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def redis_db():
    """A scratch Redis database for the broker/sweeper parts (REDIS_URL's host, db 13)."""
    url = settings.REDIS_URL.rsplit("/", 1)[0] + "/13"
    with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url):
        client = redis.Redis.from_url(url)
        yield client
        client.delete(ops.LAST_SWEEP_KEY)


def test_metrics_report_executions_jobs_agents_approvals_queues_and_sweeper(client, redis_db):
    build, deploy = factories.workflow("build-ops"), factories.workflow("deploy-ops")
    for _ in range(3):
        factories.execution(build, "completed")
    factories.execution(build, "failed")
    factories.execution(deploy, "running")  # its approval is pending
    factories.execution(deploy, "paused", with_children=False)
    long_run = factories.execution(deploy, "completed", with_children=False)
    Job.objects.create(
        execution=long_run,
        node_id="a",
        action="shell",
        status="failed",
        queue="pool.default",
        duration_ms=45_000,
        finished_at=timezone.now(),
    )
    now = timezone.now()
    Agent.objects.create(name="ops-a1", token_digest="1" * 64, token_prefix="a", last_heartbeat=now)
    Agent.objects.create(
        name="ops-a2",
        token_digest="2" * 64,
        token_prefix="b",
        last_heartbeat=now - timedelta(hours=1),
    )
    Agent.objects.create(name="ops-a3", token_digest="3" * 64, token_prefix="c", is_disabled=True)
    pool = f"pool.ops-{uuid.uuid4().hex[:8]}"
    redis_db.rpush(pool, "m1", "m2", "m3")
    redis_db.rpush(pool + "\x06\x163", "m4")  # a Celery priority sub-queue of the same pool
    ops.record_sweep(now=time.time() - 5)
    try:
        samples = scrape(client)
    finally:
        redis_db.delete(pool, pool + "\x06\x163")

    assert value(samples, "switchyard_executions", workflow="build-ops", status="completed") == 3
    assert value(samples, "switchyard_executions", workflow="build-ops", status="failed") == 1
    assert value(samples, "switchyard_executions", workflow="deploy-ops", status="running") == 1
    assert value(samples, "switchyard_executions", workflow="deploy-ops", status="paused") == 1
    assert value(samples, "switchyard_jobs_active", status="running") == 1
    assert value(samples, "switchyard_jobs_active", status="pending") == 0
    # Four completed jobs of 1.5 s, one failed job of 45 s, all in the last hour.
    assert value(samples, "switchyard_job_duration_seconds_count", status="completed") == 4
    assert value(samples, "switchyard_job_duration_seconds_sum", status="completed") == 6.0
    assert (
        value(samples, "switchyard_job_duration_seconds_bucket", status="completed", le="1.0") == 0
    )
    assert (
        value(samples, "switchyard_job_duration_seconds_bucket", status="completed", le="2.5") == 4
    )
    assert value(samples, "switchyard_job_duration_seconds_bucket", status="failed", le="30.0") == 0
    assert value(samples, "switchyard_job_duration_seconds_bucket", status="failed", le="60.0") == 1
    assert value(samples, "switchyard_job_duration_seconds_bucket", status="failed", le="+Inf") == 1
    assert value(samples, "switchyard_queue_depth", queue=pool) == 4
    assert value(samples, "switchyard_agents_online") == 1
    assert value(samples, "switchyard_agents", status="offline") == 1
    assert value(samples, "switchyard_agents", status="disabled") == 1
    assert value(samples, "switchyard_approvals_pending") == 1
    assert 5 <= value(samples, "switchyard_sweeper_lag_seconds") < 120
    assert value(samples, "switchyard_metrics_section_errors", section="queues") == 0
    assert all(
        v == 0 for (name, _), v in samples.items() if name == "switchyard_metrics_section_errors"
    )


def test_webhook_deliveries_by_verdict(client, redis_db):
    from orchestrator.trigger_models import Trigger, WebhookDelivery

    wf = factories.workflow()
    trigger = Trigger.objects.create(workflow=wf, position=99, kind="webhook", key=uuid.uuid4().hex)
    for signature, outcome in [("valid", "started"), ("valid", "started"), ("invalid", "refused")]:
        WebhookDelivery.objects.create(trigger=trigger, signature=signature, outcome=outcome)
    samples = scrape(client)
    assert (
        value(samples, "switchyard_webhook_deliveries", signature="valid", outcome="started") == 2
    )
    assert (
        value(samples, "switchyard_webhook_deliveries", signature="invalid", outcome="refused") == 1
    )


def test_no_sweep_recorded_means_no_lag_sample(client, redis_db):
    redis_db.delete(ops.LAST_SWEEP_KEY)
    samples = scrape(client)
    assert value(samples, "switchyard_sweeper_last_run_timestamp_seconds") == 0
    assert not any(name == "switchyard_sweeper_lag_seconds" for name, _ in samples)


def test_redis_down_is_reported_not_fatal(client):
    with override_settings(
        REDIS_URL="redis://127.0.0.1:1/0", CELERY_BROKER_URL="redis://127.0.0.1:1/0"
    ):
        samples = scrape(client)
    assert value(samples, "switchyard_metrics_section_errors", section="queues") == 1
    assert value(samples, "switchyard_metrics_section_errors", section="sweeper") == 1
    assert value(samples, "switchyard_metrics_section_errors", section="executions") == 0


@override_settings(SWITCHYARD_METRICS_TOKEN="metrics-s3cret")
def test_token_protects_the_endpoint(client, redis_db):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token metrics-s3cret").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer metrics-s3cret")
    assert ("switchyard_approvals_pending", ()) in samples
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer metrics-s3cret").status_code == 405


def test_open_without_a_token(client, redis_db):
    assert settings.SWITCHYARD_METRICS_TOKEN == ""
    assert client.get("/metrics").status_code == 200
