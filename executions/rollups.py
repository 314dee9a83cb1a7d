"""Analytics rollups: folding the trigger-written deltas, rebuilding from raw rows, and the
duration histogram.

What the rollups hold (triggers in migration `0008_rollup_triggers`):

- `ExecutionRollup`: terminal executions per (UTC day of `created_at`, workflow, status,
  duration bucket) with the duration sum;
- `JobRollup`: terminal jobs that ran on an agent per (UTC hour of their execution's
  `created_at`, workflow, agent, pool) with failures and busy time.

Deleting executions (API delete, retention purge, deleting a workflow) removes them from the
rollups too, in the same transaction: a purged run is gone from every figure, as if it never
ran. Unfinished executions and jobs are not in the rollups; the summary counts them from raw
rows (a partial index keeps that cheap).

Duration buckets are logarithmic, 8 per doubling: bucket 0 is [0, 1) ms and bucket b >= 1 is
[2^((b-1)/8), 2^(b/8)) ms. A percentile read from the histogram is the bucket's geometric
middle, so it is within 4.5% of the exact value read at the same rank (PRECISION).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from django.db import connection, transaction

from orchestrator.celery_app import app

BUCKETS_PER_DOUBLING = 8
PRECISION = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1

EXECUTION_KEY = ("day", "workflow_id", "status", "bucket")
JOB_KEY = ("hour", "workflow_id", "agent_id", "pool")

FOLD_EXECUTIONS_SQL = """
WITH moved AS (DELETE FROM executions_executionrollupdelta RETURNING *)
INSERT INTO executions_executionrollup (day, workflow_id, status, bucket, runs, duration_ms_sum)
SELECT day, workflow_id, status, bucket, SUM(runs), SUM(duration_ms_sum)
FROM moved GROUP BY day, workflow_id, status, bucket
ON CONFLICT (day, workflow_id, status, bucket) DO UPDATE
SET runs = executions_executionrollup.runs + EXCLUDED.runs,
    duration_ms_sum = executions_executionrollup.duration_ms_sum + EXCLUDED.duration_ms_sum
"""

FOLD_JOBS_SQL = """
WITH moved AS (DELETE FROM executions_jobrollupdelta RETURNING *)
INSERT INTO executions_jobrollup (hour, workflow_id, agent_id, pool, jobs, failed, busy_ms)
SELECT hour, workflow_id, agent_id, pool, SUM(jobs), SUM(failed), SUM(busy_ms)
FROM moved GROUP BY hour, workflow_id, agent_id, pool
ON CONFLICT (hour, workflow_id, agent_id, pool) DO UPDATE
SET jobs = executions_jobrollup.jobs + EXCLUDED.jobs,
    failed = executions_jobrollup.failed + EXCLUDED.failed,
    busy_ms = executions_jobrollup.busy_ms + EXCLUDED.busy_ms
"""

DROP_EMPTY_SQL = """
DELETE FROM executions_executionrollup WHERE runs = 0;
DELETE FROM executions_jobrollup WHERE jobs = 0
"""

REBUILD_EXECUTIONS_SQL = """
INSERT INTO executions_executionrollup (day, workflow_id, status, bucket, runs, duration_ms_sum)
SELECT day, workflow_id, status, switchyard_duration_bucket(ms), COUNT(*), COALESCE(SUM(ms), 0)
FROM (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, workflow_id, status,
           EXTRACT(EPOCH FROM finished_at - started_at) * 1000 AS ms
    FROM executions_execution
    WHERE status IN ('completed', 'failed', 'cancelled', 'timed_out') AND created_at >= %(since)s
) AS terminal
GROUP BY day, workflow_id, status, switchyard_duration_bucket(ms)
"""

REBUILD_JOBS_SQL = """
INSERT INTO executions_jobrollup (hour, workflow_id, agent_id, pool, jobs, failed, busy_ms)
SELECT date_trunc('hour', e.created_at, 'UTC'), e.workflow_id, j.agent_id, j.pool, COUNT(*),
       COUNT(*) FILTER (WHERE j.status IN ('failed', 'timeout')), COALESCE(SUM(j.duration_ms), 0)
FROM executions_job j JOIN executions_execution e ON e.id = j.execution_id
WHERE j.status IN ('completed', 'failed', 'timeout', 'cancelled') AND j.agent_id IS NOT NULL
  AND e.created_at >= %(since)s
GROUP BY 1, 2, 3, 4
"""


def fold() -> None:
    """Move every pending delta into the rollups (one statement per table, so a concurrent
    reader sees each delta exactly once: either still pending or already folded). Only
    PostgreSQL has the triggers that record deltas (and analytics); elsewhere (the SQLite quick
    start) there is nothing to fold."""
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FOLD_EXECUTIONS_SQL)
        cursor.execute(FOLD_JOBS_SQL)
        cursor.execute(DROP_EMPTY_SQL)


@app.task(name="executions.rollups.fold_rollups", shared=False, ignore_result=True)
def fold_rollups() -> None:
    """Beat entry point (control worker)."""
    fold()


def rebuild(since: datetime) -> None:
    """Recompute the rollups of executions created at or after `since` (rounded down to its
    UTC day) from the raw rows.

    It locks the delta tables first: terminal transitions wait until the rebuild commits,
    so none is both counted from the raw rows and left behind as a delta."""
    day = since.astimezone(UTC).date()
    params = {"since": datetime(day.year, day.month, day.day, tzinfo=UTC), "day": day}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "LOCK TABLE executions_executionrollupdelta, executions_jobrollupdelta "
            "IN SHARE ROW EXCLUSIVE MODE"
        )
        cursor.execute(FOLD_EXECUTIONS_SQL)
        cursor.execute(FOLD_JOBS_SQL)
        cursor.execute("DELETE FROM executions_executionrollup WHERE day >= %(day)s", params)
        cursor.execute("DELETE FROM executions_jobrollup WHERE hour >= %(since)s", params)
        cursor.execute(REBUILD_EXECUTIONS_SQL, params)
        cursor.execute(REBUILD_JOBS_SQL, params)
        cursor.execute("ANALYZE executions_executionrollup, executions_jobrollup")


def representative_ms(bucket: int) -> float:
    """The value a histogram bucket stands for: its geometric middle (0.5 ms for bucket 0)."""
    if bucket <= 0:
        return 0.5
    return 2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING)


def histogram_percentile(counts: dict[int, int], fraction: float) -> float | None:
    """`percentile_cont(fraction)` of the values a histogram `{bucket: count}` describes, each
    value taken as its bucket's representative (within PRECISION of the exact figure)."""
    ordered = sorted((bucket, n) for bucket, n in counts.items() if bucket >= 0 and n > 0)
    total = sum(n for _, n in ordered)
    if not total:
        return None
    position = fraction * (total - 1)
    below, above = math.floor(position), math.ceil(position)
    values: dict[int, float] = {}
    seen = 0
    for bucket, n in ordered:
        for rank in (below, above):
            if rank not in values and seen <= rank < seen + n:
                values[rank] = representative_ms(bucket)
        seen += n
    return values[below] + (values[above] - values[below]) * (position - below)
