"""Rollups behind the analytics summary (issue #8.5): counts and duration histograms per day.

They are maintained by PostgreSQL triggers (migration `0008_rollup_triggers`): every change
that makes an execution or job terminal, changes a terminal one, or deletes one appends a
±1 row to a `*Delta` table in the same transaction (an INSERT: no row lock is shared between
concurrent transitions). The control worker folds the deltas into the rollup tables
(`executions.rollups.fold`, every minute); the summary reads rollup and pending deltas
together, so it never waits for a fold. See `executions.rollups` for the semantics.

Keys are plain integers rather than foreign keys: rows of deleted workflows and agents net to
zero through the deletion of their executions and jobs, and no cascade has to visit them.
"""

from __future__ import annotations

from django.db import models


class ExecutionRollupCells(models.Model):
    """Terminal executions of one (created day, workflow, status, duration bucket)."""

    day = models.DateField()
    workflow_id = models.BigIntegerField()
    status = models.CharField(max_length=16)
    # `executions.rollups.duration_bucket`; -1 = no duration (never started).
    bucket = models.SmallIntegerField()
    runs = models.BigIntegerField(default=0)
    duration_ms_sum = models.FloatField(default=0)

    class Meta:
        abstract = True


class ExecutionRollup(ExecutionRollupCells):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "workflow_id", "status", "bucket"], name="execution_rollup_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} wf{self.workflow_id} {self.status}#{self.bucket}: {self.runs}"


class ExecutionRollupDelta(ExecutionRollupCells):
    """Appended by the trigger, folded into `ExecutionRollup` and deleted by the worker."""

    id = models.BigAutoField(primary_key=True)

    def __str__(self) -> str:
        return f"{self.day} wf{self.workflow_id} {self.status}#{self.bucket}: {self.runs:+d}"


class JobRollupCells(models.Model):
    """Terminal jobs run by an agent, per (hour the execution was created, workflow, agent,
    pool). Hourly, so the partial edges of a window only scan an hour of jobs each."""

    hour = models.DateTimeField()
    workflow_id = models.BigIntegerField()
    agent_id = models.BigIntegerField()
    pool = models.CharField(max_length=100)
    jobs = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    busy_ms = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class JobRollup(JobRollupCells):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "workflow_id", "agent_id", "pool"], name="job_rollup_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour} agent{self.agent_id} {self.pool}: {self.jobs}"


class JobRollupDelta(JobRollupCells):
    """Appended by the trigger, folded into `JobRollup` and deleted by the worker."""

    id = models.BigAutoField(primary_key=True)

    def __str__(self) -> str:
        return f"{self.hour} agent{self.agent_id} {self.pool}: {self.jobs:+d}"


__all__ = ["ExecutionRollup", "ExecutionRollupDelta", "JobRollup", "JobRollupDelta"]
