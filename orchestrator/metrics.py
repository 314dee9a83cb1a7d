"""`GET /metrics`: Prometheus text exposition computed at scrape time.

Everything comes from the shared state (PostgreSQL and Redis), never from in-process counters,
so every web replica answers the same and a restart loses nothing. The queries are a handful of
GROUP BYs over indexed or retention-bounded tables. Set `SWITCHYARD_METRICS_TOKEN` to require
`Authorization: Bearer <token>`; without it the endpoint is open (keep it off the public ingress).

Metrics:

- `switchyard_executions{workflow,status}`: executions in the database per workflow and status
- `switchyard_jobs_active{status}`: jobs pending, dispatched or running
- `switchyard_job_duration_seconds{status}`: histogram of jobs finished in the last hour
- `switchyard_queue_depth{queue}`: messages waiting in each `pool.*` queue (and `control`)
- `switchyard_agents{status}` and `switchyard_agents_online`: registered agents by liveness
- `switchyard_approvals_pending`: approval requests waiting for a decision
- `switchyard_webhook_deliveries{signature,outcome}`: webhook deliveries by verdict
- `switchyard_sweeper_last_run_timestamp_seconds`, `switchyard_sweeper_lag_seconds`
- `switchyard_metrics_section_errors{section}`: 1 when a section could not be computed
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from orchestrator import ops

logger = logging.getLogger("switchyard.metrics")

# Upper bounds (seconds) of the job duration histogram buckets; +Inf is added.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_WINDOW = timedelta(hours=1)
ACTIVE_JOB_STATUSES = ("pending", "dispatched", "running")
TERMINAL_JOB_STATUSES = ("completed", "failed", "timeout", "cancelled")
# Kombu's Redis transport keeps priority sub-queues as `<queue>\x06\x16<priority>`.
PRIORITY_SEPARATOR = "\x06\x16"


def executions_by_workflow_and_status() -> Iterator[Metric]:
    from executions.models import Execution

    family = GaugeMetricFamily(
        "switchyard_executions",
        "Executions in the database by workflow and status.",
        labels=["workflow", "status"],
    )
    rows = (
        Execution.objects.order_by().values_list("workflow__slug", "status").annotate(n=Count("pk"))
    )
    for slug, status, n in rows:
        family.add_metric([slug, status], n)
    yield family


def active_jobs() -> Iterator[Metric]:
    from executions.models import Job

    counts = dict.fromkeys(ACTIVE_JOB_STATUSES, 0)
    rows = (
        Job.objects.filter(status__in=ACTIVE_JOB_STATUSES)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    counts.update(dict(rows))
    family = GaugeMetricFamily(
        "switchyard_jobs_active", "Jobs not finished yet, by status.", labels=["status"]
    )
    for status, n in counts.items():
        family.add_metric([status], n)
    yield family


def job_durations() -> Iterator[Metric]:
    """One query: cumulative bucket counts per status via conditional aggregation."""
    from executions.models import Job

    since = timezone.now() - DURATION_WINDOW
    buckets = {
        f"le_{index}": Count("pk", filter=Q(duration_ms__lte=bound * 1000))
        for index, bound in enumerate(DURATION_BUCKETS)
    }
    rows = (
        Job.objects.filter(
            status__in=TERMINAL_JOB_STATUSES, finished_at__gte=since, duration_ms__isnull=False
        )
        .order_by()
        .values("status")
        .annotate(total=Count("pk"), sum_ms=Sum("duration_ms"), **buckets)
    )
    family = HistogramMetricFamily(
        "switchyard_job_duration_seconds",
        "Duration of jobs finished in the last hour, by final status.",
        labels=["status"],
    )
    for row in rows:
        points = [
            (format_bound(bound), row[f"le_{index}"])
            for index, bound in enumerate(DURATION_BUCKETS)
        ]
        points.append(("+Inf", row["total"]))
        family.add_metric([row["status"]], points, sum_value=(row["sum_ms"] or 0) / 1000)
    yield family


def format_bound(bound: float) -> str:
    return repr(float(bound))


def broker_url() -> str:
    url = getattr(settings, "CELERY_BROKER_URL", "") or ""
    return url if url.startswith(("redis://", "rediss://", "unix://")) else settings.REDIS_URL


def queue_depths() -> Iterator[Metric]:
    """`LLEN` of every `pool.*` list (priority sub-queues folded in) and of `control`."""
    client = ops.redis_client(broker_url())
    depths: dict[str, int] = {"control": 0}
    names = [key.decode() for key in client.scan_iter(match="pool.*", count=500, _type="list")]
    names += [key.decode() for key in client.scan_iter(match="control*", _type="list")]
    for name in names:
        base = name.split(PRIORITY_SEPARATOR, 1)[0]
        if base != "control" and not base.startswith("pool."):
            continue
        depths[base] = depths.get(base, 0) + int(client.llen(name))
    from agents.models import AgentPool

    for pool in AgentPool.objects.values_list("name", flat=True):
        depths.setdefault(f"pool.{pool}", 0)
    family = GaugeMetricFamily(
        "switchyard_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
    )
    for name in sorted(depths):
        family.add_metric([name], depths[name])
    yield family


def agents_by_status() -> Iterator[Metric]:
    from agents.models import Agent

    cutoff = timezone.now() - timedelta(seconds=3 * settings.SWITCHYARD_HEARTBEAT_INTERVAL)
    disabled = Q(is_disabled=True) | Q(revoked_at__isnull=False)
    totals = Agent.objects.aggregate(
        total=Count("pk"),
        disabled=Count("pk", filter=disabled),
        online=Count("pk", filter=~disabled & Q(last_heartbeat__gte=cutoff)),
    )
    offline = totals["total"] - totals["disabled"] - totals["online"]
    family = GaugeMetricFamily(
        "switchyard_agents", "Registered agents by liveness.", labels=["status"]
    )
    family.add_metric(["online"], totals["online"])
    family.add_metric(["offline"], offline)
    family.add_metric(["disabled"], totals["disabled"])
    yield family
    yield GaugeMetricFamily(
        "switchyard_agents_online",
        "Agents that sent a heartbeat within three heartbeat intervals.",
        value=totals["online"],
    )


def approvals_pending() -> Iterator[Metric]:
    from approvals.models import ApprovalRequest

    yield GaugeMetricFamily(
        "switchyard_approvals_pending",
        "Approval requests waiting for a decision.",
        value=ApprovalRequest.objects.filter(status="pending").count(),
    )


def webhook_deliveries() -> Iterator[Metric]:
    """Only when the webhook trigger models exist (the orchestrator app provides them)."""
    if not apps.is_installed("orchestrator"):
        return
    try:
        model = apps.get_model("orchestrator", "WebhookDelivery")
    except LookupError:
        return
    fields = {field.name for field in model._meta.get_fields()}
    if not {"signature", "outcome"} <= fields:
        return
    family = GaugeMetricFamily(
        "switchyard_webhook_deliveries",
        "Stored webhook deliveries by signature verdict and outcome.",
        labels=["signature", "outcome"],
    )
    rows = model.objects.order_by().values_list("signature", "outcome").annotate(n=Count("pk"))
    for signature, outcome, n in rows:
        family.add_metric([signature, outcome], n)
    yield family


def sweeper() -> Iterator[Metric]:
    last = ops.last_sweep()
    yield GaugeMetricFamily(
        "switchyard_sweeper_last_run_timestamp_seconds",
        "Unix time of the sweeper's last completed pass (0: never recorded).",
        value=last or 0,
    )
    if last is not None:
        yield GaugeMetricFamily(
            "switchyard_sweeper_lag_seconds",
            "Seconds since the sweeper's last completed pass.",
            value=max(0.0, time.time() - last),
        )


SECTIONS: dict[str, Callable[[], Iterable[Metric]]] = {
    "executions": executions_by_workflow_and_status,
    "jobs": active_jobs,
    "job_durations": job_durations,
    "queues": queue_depths,
    "agents": agents_by_status,
    "approvals": approvals_pending,
    "webhooks": webhook_deliveries,
    "sweeper": sweeper,
}


class SwitchyardCollector:
    """Computes every section; a failing section (say, Redis down) is reported, not fatal."""

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        errors = GaugeMetricFamily(
            "switchyard_metrics_section_errors",
            "1 when a section of this scrape could not be computed (see the web log).",
            labels=["section"],
        )
        for name, section in SECTIONS.items():
            try:
                metrics = list(section())
            except Exception:
                logger.exception("metrics section %s failed", name)
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            yield from metrics
        yield errors
        yield GaugeMetricFamily(
            "switchyard_metrics_scrape_duration_seconds",
            "Time spent computing this scrape.",
            value=time.perf_counter() - started,
        )


def authorized(request: HttpRequest) -> bool:
    token = getattr(settings, "SWITCHYARD_METRICS_TOKEN", "") or ""
    if not token:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchyardCollector())
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
