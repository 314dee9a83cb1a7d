"""Executions, their jobs (one row per attempt) and the execution log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class ExecutionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


EXECUTION_TERMINAL = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class JobStatus(models.TextChoices):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


JOB_TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED}
)
JOB_UNCLAIMED = (JobStatus.PENDING, JobStatus.DISPATCHED)


class Execution(models.Model):
    """One run of one workflow version. `nodes` holds the per-node state the engine advances."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(
        "orchestrator.Workflow", on_delete=models.CASCADE, related_name="executions"
    )
    version = models.ForeignKey(
        "orchestrator.WorkflowVersion", on_delete=models.PROTECT, related_name="executions"
    )
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING
    )
    trigger = models.JSONField(default=dict)
    trigger_kind = models.CharField(max_length=16, default="manual")
    inputs = models.JSONField(default=dict)
    vars = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    labels = models.JSONField(default=dict)
    nodes = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    parent_node_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    # Earliest moment the control plane must look at this execution again (a `wait` node).
    next_timer_at = models.DateTimeField(null=True, blank=True)
    # A client's `Idempotency-Key` for starting this run: one run per workflow and key.
    idempotency_key = models.CharField(max_length=200, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="execution_idempotency_key",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_timer_at"],
                name="execution_timer_due",
                condition=models.Q(next_timer_at__isnull=False),
            ),
            models.Index(
                fields=["deadline_at"],
                name="execution_deadline",
                condition=models.Q(status__in=["pending", "running", "paused"]),
            ),
            models.Index(fields=["-created_at", "-id"], name="execution_recent"),
            # List filters, each in the list's order (-created_at, -id) so a page is an index
            # range read up to LIMIT, however deep the cursor.
            models.Index(fields=["workflow", "-created_at", "-id"], name="execution_by_workflow"),
            models.Index(fields=["status", "-created_at", "-id"], name="execution_by_status"),
            models.Index(
                fields=["trigger_kind", "-created_at", "-id"], name="execution_by_trigger"
            ),
            models.Index(
                fields=["workflow", "status", "-created_at", "-id"],
                name="execution_by_workflow_status",
            ),
            # Unfinished runs of the rollup-covered days (analytics summary).
            models.Index(
                fields=["created_at"],
                name="execution_live",
                condition=models.Q(status__in=["pending", "running", "paused"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in EXECUTION_TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if not self.started_at:
            return None
        if not self.finished_at:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class Job(models.Model):
    """One attempt of one action node on an agent. A retry is a new row with `attempt + 1`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="jobs")
    node_id = models.CharField(max_length=100)
    action = models.CharField(max_length=50)
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    pool = models.CharField(max_length=100, blank=True)
    queue = models.CharField(max_length=150)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    lease = models.UUIDField(null=True, blank=True)
    params = models.JSONField(default=dict)
    labels = models.JSONField(default=dict, blank=True)
    secrets = models.JSONField(default=list, blank=True)
    timeout_s = models.FloatField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True)
    stderr = models.TextField(blank=True)
    outputs = models.JSONField(default=dict)
    http = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=20, blank=True)
    assertions = models.JSONField(default=list, blank=True)
    wait_reason = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    kill_requested_at = models.DateTimeField(null=True, blank=True)
    output_seq = models.PositiveIntegerField(default=0)
    output_bytes = models.PositiveBigIntegerField(default=0)
    output_truncated = models.BooleanField(default=False)
    queued_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["queued_at", "node_id", "attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "node_id", "attempt"], name="unique_job_attempt"
            )
        ]
        indexes = [
            models.Index(
                fields=["status", "queued_at"],
                name="job_unclaimed",
                condition=models.Q(status__in=["pending", "dispatched"]),
            ),
            models.Index(
                fields=["status", "started_at"],
                name="job_running",
                condition=models.Q(status="running"),
            ),
            models.Index(fields=["agent", "status"], name="job_by_agent"),
            models.Index(
                fields=["finished_at"],
                name="job_finished",
                condition=models.Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}#{self.attempt} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in JOB_TERMINAL


class JobOutputChunk(models.Model):
    """A piece of a job's live output, in agent order (`seq` per job, across both streams)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    stream = models.CharField(max_length=6)
    data = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="unique_chunk_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq}"


class EventLevel(models.TextChoices):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class ExecutionEvent(models.Model):
    """One engine decision in an execution's log. Ids increase monotonically."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    timestamp = models.DateTimeField()
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    kind = models.CharField(max_length=40)
    node_id = models.CharField(max_length=100, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["execution", "id"], name="event_by_execution")]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message}"


from executions.analysis_models import *  # noqa: E402,F403
from executions.rollup_models import *  # noqa: E402,F403
from executions.ui_models import *  # noqa: E402,F403
