"""Analytics queries: a summary of a time window and flaky-node detection.

The summary reads the rollups (`executions.rollups`) for the whole days (jobs: hours) of the
window and raw rows only for the partial edges and for unfinished runs, in three grouped
queries whatever the window's size. Flaky nodes are computed from raw rows in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from executions.models import EXECUTION_TERMINAL, Execution, ExecutionStatus, Job
from executions.rollups import histogram_percentile

DEFAULT_WINDOW = timedelta(days=30)
TOP_WORKFLOWS = 10
FLAKY_EVIDENCE = 5

FINISHED = sorted(status.value for status in EXECUTION_TERMINAL)
# "failed" in per-day buckets: the run ended badly on its own (not cancelled by someone).
FAILED = [ExecutionStatus.FAILED.value, ExecutionStatus.TIMED_OUT.value]


def ceil_to(moment: datetime, unit: timedelta) -> datetime:
    floor = floor_to(moment, unit)
    return floor if floor == moment else floor + unit


def floor_to(moment: datetime, unit: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (moment.astimezone(UTC) - epoch) // unit * unit


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

    def whole(self, unit: timedelta) -> tuple[datetime, datetime]:
        """The whole UTC days (or hours) inside the window, `[first, last)`; both equal to
        `until` when there is none (the window is then read from raw rows only)."""
        first, last = ceil_to(self.since, unit), floor_to(self.until, unit)
        return (first, last) if first < last else (self.until, self.until)

    def params(self, slugs: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        t0, t1 = self.whole(DAY)
        h0, h1 = self.whole(HOUR)
        return {
            "since": self.since,
            "until": self.until,
            "t0": t0,
            "t1": t1,
            "d0": t0.astimezone(UTC).date(),
            "d1": t1.astimezone(UTC).date(),
            "h0": h0,
            "h1": h1,
            "slugs": list(self.workflows if slugs is None else slugs),
        }


DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def ratio(part: int | None, whole: int | None) -> float | None:
    if not whole:
        return None
    return round((part or 0) / whole, 4)


def whole_ms(value: float | None) -> int | None:
    return None if value is None else round(value)


# Terminal executions of whole days from the rollup and its pending deltas; the partial days
# at the edges, and unfinished runs of the whole days, from raw rows.
EXECUTION_CELLS_SQL = """
SELECT day, workflow_id, status, bucket, runs, duration_ms_sum AS ms
FROM executions_executionrollup WHERE day >= %(d0)s AND day < %(d1)s {wf}
UNION ALL
SELECT day, workflow_id, status, bucket, runs, duration_ms_sum
FROM executions_executionrollupdelta WHERE day >= %(d0)s AND day < %(d1)s {wf}
UNION ALL
SELECT (created_at AT TIME ZONE 'UTC')::date, workflow_id, status,
       switchyard_duration_bucket(ms), 1, ms
FROM (
    SELECT created_at, workflow_id, status,
           EXTRACT(EPOCH FROM finished_at - started_at) * 1000 AS ms
    FROM executions_execution WHERE created_at >= %(since)s AND created_at < %(t0)s {wf}
    UNION ALL
    SELECT created_at, workflow_id, status,
           EXTRACT(EPOCH FROM finished_at - started_at) * 1000
    FROM executions_execution WHERE created_at >= %(t1)s AND created_at < %(until)s {wf}
    UNION ALL
    SELECT created_at, workflow_id, status,
           EXTRACT(EPOCH FROM finished_at - started_at) * 1000
    FROM executions_execution
    WHERE created_at >= %(t0)s AND created_at < %(t1)s
      AND status IN ('pending', 'running', 'paused') {wf}
) AS raw
"""

# One scan of the cells, three groupings (told apart by GROUPING(day, status, bucket)):
# counts per (day, workflow, status), the window's duration histogram, and the histogram per
# (workflow, day) behind the duration trend, the latter only for the top workflows (the ones
# `summary` ranks first by runs, then slug in code-point order): with every workflow's, the
# trend cells were nine rows in ten of the answer and most of the summary's time in Python.
COUNTS_SQL = """
WITH c AS (
    SELECT GROUPING(day, status, bucket) AS kind, day, workflow_id, status, bucket,
           SUM(runs) AS runs, SUM(runs) FILTER (WHERE bucket >= 0) AS timed, SUM(ms) AS ms
    FROM ({cells}) AS cells
    GROUP BY GROUPING SETS ((day, workflow_id, status), (bucket), (workflow_id, day, bucket))
), top AS (
    SELECT c.workflow_id
    FROM c JOIN {workflow} w ON w.id = c.workflow_id
    WHERE c.kind = 1
    GROUP BY c.workflow_id, w.slug
    HAVING SUM(c.runs) > 0
    ORDER BY SUM(c.runs) DESC, w.slug COLLATE "C"
    LIMIT %(top)s
)
SELECT c.kind, c.day, w.slug, c.status, c.bucket, c.runs, c.timed, c.ms
FROM c LEFT JOIN {workflow} w ON w.id = c.workflow_id
WHERE c.kind = 6
   OR (w.id IS NOT NULL AND (c.kind <> 2 OR c.workflow_id IN (SELECT workflow_id FROM top)))
"""
COUNTS_ROW, HISTOGRAM_ROW, TREND_ROW = 1, 6, 2

JOB_CELLS_SQL = """
SELECT agent_id, pool, jobs, failed, busy_ms
FROM executions_jobrollup WHERE hour >= %(h0)s AND hour < %(h1)s {wf}
UNION ALL
SELECT agent_id, pool, jobs, failed, busy_ms
FROM executions_jobrollupdelta WHERE hour >= %(h0)s AND hour < %(h1)s {wf}
UNION ALL
SELECT j.agent_id, j.pool, 1, (j.status IN ('failed', 'timeout'))::int,
       COALESCE(j.duration_ms, 0)
FROM executions_job j JOIN executions_execution e ON e.id = j.execution_id
WHERE j.agent_id IS NOT NULL AND (
    (e.created_at >= %(since)s AND e.created_at < %(h0)s)
    OR (e.created_at >= %(h1)s AND e.created_at < %(until)s)
) {ewf}
UNION ALL
SELECT j.agent_id, j.pool, 1, 0, COALESCE(j.duration_ms, 0)
FROM executions_job j JOIN executions_execution e ON e.id = j.execution_id
WHERE j.agent_id IS NOT NULL AND j.status IN ('pending', 'dispatched', 'running')
  AND e.created_at >= %(h0)s AND e.created_at < %(h1)s {ewf}
"""

UTILISATION_SQL = """
SELECT a.name, c.pool, c.jobs, c.failed, c.busy_ms
FROM (
    SELECT agent_id, pool, SUM(jobs) AS jobs, SUM(failed) AS failed, SUM(busy_ms) AS busy_ms
    FROM ({cells}) AS cells
    GROUP BY agent_id, pool
    HAVING SUM(jobs) > 0
) AS c JOIN {agent} a ON a.id = c.agent_id
"""


def workflow_filter(column: str, filtered: bool) -> str:
    from orchestrator.models import Workflow

    if not filtered:
        return ""
    return f"AND {column} IN (SELECT id FROM {Workflow._meta.db_table} WHERE slug = ANY(%(slugs)s))"


def fetch(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def execution_cells(filtered: bool) -> str:
    return EXECUTION_CELLS_SQL.format(wf=workflow_filter("workflow_id", filtered))


def summary(window: Window) -> dict[str, Any]:
    """The window's figures from the rollups (see `executions.rollups`): counts are exact,
    duration percentiles are read from the duration histogram (within `rollups.PRECISION`)."""
    from orchestrator.models import Workflow

    tables = {"workflow": Workflow._meta.db_table}
    rows = fetch(
        COUNTS_SQL.format(cells=execution_cells(bool(window.workflows)), **tables),
        window.params() | {"top": TOP_WORKFLOWS},
    )
    histogram: dict[int, int] = {}
    trend_cells: dict[tuple[str, Any], dict[int, int]] = {}
    days: dict[Any, dict[str, int]] = {}
    workflows: dict[str, dict[str, int]] = {}
    totals = {"runs": 0, "completed": 0, "failed": 0, "finished": 0, "timed": 0, "ms": 0.0}
    for row in rows:
        if row["kind"] == HISTOGRAM_ROW:
            histogram[row["bucket"]] = int(row["runs"])
            continue
        if row["kind"] == TREND_ROW:
            if row["bucket"] >= 0 and row["runs"]:
                cell = trend_cells.setdefault((row["slug"], row["day"]), {})
                cell[row["bucket"]] = int(row["runs"])
            continue
        runs = int(row["runs"])
        if not runs:
            continue
        counts = {
            "runs": runs,
            "completed": runs if row["status"] == ExecutionStatus.COMPLETED else 0,
            "failed": runs if row["status"] in FAILED else 0,
            "finished": runs if row["status"] in FINISHED else 0,
        }
        for table, key in ((days, row["day"]), (workflows, row["slug"])):
            entry = table.setdefault(key, dict.fromkeys(counts, 0))
            for name, value in counts.items():
                entry[name] += value
        for name, value in counts.items():
            totals[name] += value
        totals["timed"] += int(row["timed"] or 0)
        totals["ms"] += row["ms"] or 0.0

    per_day = [
        {
            "day": day,
            "completed": entry["completed"],
            "failed": entry["failed"],
            "other": entry["runs"] - entry["completed"] - entry["failed"],
        }
        for day, entry in sorted(days.items())
    ]
    top = sorted(workflows.items(), key=lambda item: (-item[1]["runs"], item[0]))[:TOP_WORKFLOWS]
    top_workflows = [
        {
            "workflow": slug,
            "runs": entry["runs"],
            "completed": entry["completed"],
            "failed": entry["failed"],
            "success_rate": ratio(entry["completed"], entry["finished"]),
        }
        for slug, entry in top
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
            "avg": whole_ms(totals["ms"] / totals["timed"]) if totals["timed"] else None,
            "p50": whole_ms(histogram_percentile(histogram, 0.5)),
            "p95": whole_ms(histogram_percentile(histogram, 0.95)),
        },
        "active_workflows": len(workflows),
        "per_day": per_day,
        "top_workflows": top_workflows,
        "agent_utilisation": agent_utilisation,
        "pool_utilisation": pool_utilisation,
        "duration_trend": trend_of(trend_cells, {slug for slug, _ in top}),
    }


def trend_of(cells: dict[tuple[str, Any], dict[int, int]], slugs: set[str]) -> list[dict[str, Any]]:
    """p50/p95 per day of the given workflows' finished runs, from their duration histograms
    per (workflow, day)."""
    trend = []
    for (slug, day), histogram in sorted(cells.items()):
        runs = sum(n for n in histogram.values() if n > 0)
        if slug in slugs and runs:
            trend.append(
                {
                    "workflow": slug,
                    "day": day,
                    "runs": runs,
                    "p50_ms": whole_ms(histogram_percentile(histogram, 0.5)),
                    "p95_ms": whole_ms(histogram_percentile(histogram, 0.95)),
                }
            )
    return trend


def utilisation(window: Window) -> tuple[list[dict], list[dict]]:
    """Jobs, failures and busy time per agent and per pool: hourly job rollups for the whole
    hours of the window, raw jobs for the partial hours at its edges and for unfinished jobs."""
    from agents.models import Agent

    filtered = bool(window.workflows)
    cells = JOB_CELLS_SQL.format(
        wf=workflow_filter("workflow_id", filtered),
        ewf=workflow_filter("e.workflow_id", filtered),
    )
    rows = fetch(UTILISATION_SQL.format(cells=cells, agent=Agent._meta.db_table), window.params())
    agents: dict[str, dict] = {}
    pools: dict[str, dict] = {}
    for row in rows:
        keyed = [(agents, "agent", row["name"])]
        if row["pool"]:
            keyed.append((pools, "pool", row["pool"]))
        for table, key, name in keyed:
            entry = table.setdefault(name, {key: name, "jobs": 0, "failed": 0, "busy_ms": 0})
            entry["jobs"] += int(row["jobs"])
            entry["failed"] += int(row["failed"])
            entry["busy_ms"] += int(row["busy_ms"] or 0)

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
