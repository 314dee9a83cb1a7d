"""Analytics queries: a summary of a time window and flaky-node detection.

Everything is computed in PostgreSQL with a handful of GROUP BY queries over executions created
in `[since, until)` (the `execution_recent` / `execution_by_workflow` indexes), never with
per-row Python loops over executions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from executions.models import EXECUTION_TERMINAL, Execution, ExecutionStatus, Job, JobStatus

DEFAULT_WINDOW = timedelta(days=30)
TOP_WORKFLOWS = 10
FLAKY_EVIDENCE = 5

FINISHED = sorted(status.value for status in EXECUTION_TERMINAL)
# "failed" in per-day buckets: the run ended badly on its own (not cancelled by someone).
FAILED = [ExecutionStatus.FAILED.value, ExecutionStatus.TIMED_OUT.value]


class PercentileCont(Aggregate):
    """PostgreSQL `percentile_cont(fraction) WITHIN GROUP (ORDER BY expr)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def duration_ms_expression() -> Func:
    """`finished_at - started_at` in milliseconds (NULL while either is unset)."""
    interval = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    return Func(
        interval, template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000)", output_field=FloatField()
    )


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    workflows: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        since: datetime | None = None,
        until: datetime | None = None,
        workflows: tuple[str, ...] | list[str] = (),
    ) -> Window:
        until = until or timezone.now()
        since = since or until - DEFAULT_WINDOW
        return cls(since=since, until=until, workflows=tuple(workflows))

    def executions(self) -> QuerySet[Execution]:
        queryset = Execution.objects.filter(created_at__gte=self.since, created_at__lt=self.until)
        if self.workflows:
            queryset = queryset.filter(workflow__slug__in=self.workflows)
        return queryset.order_by()

    def jobs(self) -> QuerySet[Job]:
        queryset = Job.objects.filter(
            execution__created_at__gte=self.since, execution__created_at__lt=self.until
        )
        if self.workflows:
            queryset = queryset.filter(execution__workflow__slug__in=self.workflows)
        return queryset.order_by()


def ratio(part: int | None, whole: int | None) -> float | None:
    if not whole:
        return None
    return round((part or 0) / whole, 4)


def whole_ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def status_counts() -> dict[str, Any]:
    return {
        "runs": Count("id"),
        "completed": Count("id", filter=Q(status=ExecutionStatus.COMPLETED)),
        "failed": Count("id", filter=Q(status__in=FAILED)),
        "finished": Count("id", filter=Q(status__in=FINISHED)),
    }


def summary(window: Window) -> dict[str, Any]:
    executions = window.executions()
    duration = duration_ms_expression()
    finished_ok = Q(started_at__isnull=False, finished_at__isnull=False)

    totals = executions.aggregate(
        **status_counts(),
        active_workflows=Count("workflow", distinct=True),
        avg=Avg(duration, filter=finished_ok),
        p50=PercentileCont(duration, 0.5),
        p95=PercentileCont(duration, 0.95),
    )

    day = TruncDate("created_at", tzinfo=UTC)
    per_day = [
        {
            "day": row["day"],
            "completed": row["completed"],
            "failed": row["failed"],
            "other": row["runs"] - row["completed"] - row["failed"],
        }
        for row in executions.annotate(day=day)
        .values("day")
        .annotate(**status_counts())
        .order_by("day")
    ]

    top_rows = list(
        executions.values("workflow__slug")
        .annotate(**status_counts())
        .order_by("-runs", "workflow__slug")[:TOP_WORKFLOWS]
    )
    top_workflows = [
        {
            "workflow": row["workflow__slug"],
            "runs": row["runs"],
            "completed": row["completed"],
            "failed": row["failed"],
            "success_rate": ratio(row["completed"], row["finished"]),
        }
        for row in top_rows
    ]

    trend_slugs = [row["workflow__slug"] for row in top_rows]
    duration_trend = [
        {
            "workflow": row["workflow__slug"],
            "day": row["day"],
            "runs": row["runs"],
            "p50_ms": whole_ms(row["p50"]),
            "p95_ms": whole_ms(row["p95"]),
        }
        for row in executions.filter(workflow__slug__in=trend_slugs)
        .filter(finished_ok)
        .annotate(day=day)
        .values("workflow__slug", "day")
        .annotate(
            runs=Count("id"),
            p50=PercentileCont(duration, 0.5),
            p95=PercentileCont(duration, 0.95),
        )
        .order_by("workflow__slug", "day")
    ]

    agent_utilisation, pool_utilisation = utilisation(window)

    return {
        "since": window.since,
        "until": window.until,
        "workflows": list(window.workflows),
        "total_executions": totals["runs"],
        "completed": totals["completed"],
        "failed": totals["failed"],
        "finished": totals["finished"],
        "success_rate": ratio(totals["completed"], totals["finished"]),
        "duration_ms": {
            "avg": whole_ms(totals["avg"]),
            "p50": whole_ms(totals["p50"]),
            "p95": whole_ms(totals["p95"]),
        },
        "active_workflows": totals["active_workflows"],
        "per_day": per_day,
        "top_workflows": top_workflows,
        "agent_utilisation": agent_utilisation,
        "pool_utilisation": pool_utilisation,
        "duration_trend": duration_trend,
    }


def utilisation(window: Window) -> tuple[list[dict], list[dict]]:
    """Jobs, failures and busy time per agent and per pool, from ONE grouped scan of the
    window's jobs by (agent, pool): the groups are few, the jobs many."""
    rows = (
        window.jobs()
        .filter(agent__isnull=False)
        .values("agent__name", "pool")
        .annotate(
            jobs=Count("id"),
            failed=Count("id", filter=Q(status__in=[JobStatus.FAILED, JobStatus.TIMEOUT])),
            busy_ms=Sum("duration_ms"),
        )
    )
    agents: dict[str, dict] = {}
    pools: dict[str, dict] = {}
    for row in rows:
        keyed = [(agents, "agent", row["agent__name"])]
        if row["pool"]:
            keyed.append((pools, "pool", row["pool"]))
        for table, key, name in keyed:
            entry = table.setdefault(name, {key: name, "jobs": 0, "failed": 0, "busy_ms": 0})
            entry["jobs"] += row["jobs"]
            entry["failed"] += row["failed"]
            entry["busy_ms"] += row["busy_ms"] or 0

    def ranked(table: dict[str, dict], key: str) -> list[dict]:
        return sorted(table.values(), key=lambda entry: (-entry["busy_ms"], entry[key]))

    return ranked(agents, "agent"), ranked(pools, "pool")


FLAKY_SQL = """
WITH per_run AS (
    SELECT w.slug AS workflow, j.node_id, j.execution_id, e.created_at, e.version_id,
           md5(e.inputs::text) AS inputs_key,
           MIN(j.attempt) FILTER (WHERE j.status IN ('failed', 'timeout')) AS first_fail,
           MAX(j.attempt) FILTER (WHERE j.status = 'completed') AS last_ok
    FROM {job} j
    JOIN {execution} e ON e.id = j.execution_id
    JOIN {workflow} w ON w.id = e.workflow_id
    WHERE e.created_at >= %(since)s AND e.created_at < %(until)s {workflow_filter}
    GROUP BY w.slug, j.node_id, j.execution_id, e.created_at, e.version_id, e.inputs
), outcomes AS (
    SELECT *,
           CASE WHEN last_ok IS NOT NULL THEN true
                WHEN first_fail IS NOT NULL THEN false END AS passed,
           last_ok > first_fail AS retried_ok
    FROM per_run
), sequenced AS (
    SELECT *,
           LAG(passed) OVER (
               PARTITION BY workflow, node_id, version_id, inputs_key
               ORDER BY created_at, execution_id
           ) AS previous_passed
    FROM outcomes
    WHERE passed IS NOT NULL OR retried_ok
), marked AS (
    SELECT *, COALESCE(retried_ok, false) AS is_retry_flaky,
           previous_passed IS NOT NULL AND previous_passed <> passed AS is_alternating
    FROM sequenced
)
SELECT workflow, node_id,
       COUNT(*) AS runs,
       COUNT(*) FILTER (WHERE is_retry_flaky) AS flaky_runs,
       COUNT(*) FILTER (WHERE is_alternating) AS alternating_runs,
       COUNT(*) FILTER (WHERE NOT passed) AS failed_runs,
       COUNT(*) FILTER (WHERE is_retry_flaky OR is_alternating) AS unstable_runs,
       (ARRAY_AGG(execution_id ORDER BY created_at DESC, execution_id)
           FILTER (WHERE is_retry_flaky OR is_alternating))[1:%(evidence)s] AS evidence
FROM marked
GROUP BY workflow, node_id
HAVING COUNT(*) FILTER (WHERE is_retry_flaky OR is_alternating) > 0
ORDER BY unstable_runs DESC, workflow, node_id
"""


def flaky_nodes(window: Window) -> dict[str, Any]:
    """Nodes whose outcome is unstable: retried to success, or alternating across runs.

    A run of a node is *flaky* when an attempt completed after an earlier attempt failed or
    timed out in the same execution. It is *alternating* when its final outcome (passed or
    failed) differs from the previous run of the same node on the same workflow version with
    the same inputs. `runs` counts every execution in the window where the node passed or
    failed; `share` is the part of them that were flaky or alternating.
    """
    from orchestrator.models import Workflow

    sql = FLAKY_SQL.format(
        job=Job._meta.db_table,
        execution=Execution._meta.db_table,
        workflow=Workflow._meta.db_table,
        workflow_filter="AND w.slug = ANY(%(workflows)s)" if window.workflows else "",
    )
    params = {
        "since": window.since,
        "until": window.until,
        "workflows": list(window.workflows),
        "evidence": FLAKY_EVIDENCE,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    return {
        "since": window.since,
        "until": window.until,
        "workflows": list(window.workflows),
        "nodes": [
            {
                "workflow": row["workflow"],
                "node": row["node_id"],
                "runs": row["runs"],
                "flaky_runs": row["flaky_runs"],
                "alternating_runs": row["alternating_runs"],
                "failed_runs": row["failed_runs"],
                "share": ratio(row["unstable_runs"], row["runs"]),
                "evidence": [str(execution_id) for execution_id in row["evidence"] or []],
            }
            for row in rows
        ],
    }
