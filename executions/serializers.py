"""API shapes of executions, jobs and log events (field names are part of the contract)."""

from __future__ import annotations

from datetime import datetime, tzinfo

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.helpers import lazy_serializer
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from executions.models import JOB_TERMINAL, Execution, ExecutionEvent, Job
from orchestrator.serializers import LabelsField
from orchestrator.services import spec_for_version

DETAIL_LOG_LIMIT = 1000


_drf_datetime = serializers.DateTimeField().to_representation


def datetime_representation(value: datetime | None, zone: tzinfo) -> str | None:
    """DRF's ISO 8601 rendering of an aware datetime in the current time zone (`zone`, looked
    up once per row: DRF looks it up per value, through asgiref's context-local storage)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return _drf_datetime(value)
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


JOB_DATETIME_FIELDS = frozenset(
    ("not_before", "kill_requested_at", "queued_at", "dispatched_at", "started_at", "finished_at")
)
# How DRF's field for each other non-text column renders a value that is not None (text and
# JSON columns are returned as they are).
JOB_FIELD_REPRESENTATIONS = {
    "id": str,
    "attempt": int,
    "exit_code": int,
    "duration_ms": int,
    "timeout_s": float,
}


class JobSerializer(serializers.ModelSerializer):
    """A job. `to_representation` builds the same dict as DRF's generic one (a test compares
    them) without DRF's per-field machinery: a 200-job detail spent a third of its time there."""

    agent = serializers.CharField(source="agent.name", default=None, allow_null=True)

    def to_representation(self, job: Job) -> dict:
        zone = timezone.get_current_timezone()
        data = {}
        for name in self.Meta.fields:
            if name == "agent":
                data[name] = job.agent.name if job.agent_id is not None else None
                continue
            value = getattr(job, name)
            if value is None:
                data[name] = None
            elif name in JOB_DATETIME_FIELDS:
                data[name] = datetime_representation(value, zone)
            else:
                represent = JOB_FIELD_REPRESENTATIONS.get(name)
                data[name] = value if represent is None else represent(value)
        return data

    class Meta:
        model = Job
        fields = [
            "id",
            "node_id",
            "action",
            "attempt",
            "status",
            "agent",
            "pool",
            "queue",
            "exit_code",
            "stdout",
            "stderr",
            "outputs",
            "http",
            "error",
            "error_kind",
            "assertions",
            "labels",
            "wait_reason",
            "params",
            "timeout_s",
            "not_before",
            "kill_requested_at",
            "queued_at",
            "dispatched_at",
            "started_at",
            "finished_at",
            "duration_ms",
        ]


class EventSerializer(serializers.ModelSerializer):
    """A log event. `to_representation` builds DRF's generic dict directly (a test compares
    them): a detail carries up to a thousand events, the live stream one per change."""

    class Meta:
        model = ExecutionEvent
        fields = ["id", "timestamp", "level", "kind", "node_id", "job", "message", "data"]

    def to_representation(self, event: ExecutionEvent) -> dict:
        return {
            "id": int(event.id),
            "timestamp": datetime_representation(event.timestamp, timezone.get_current_timezone()),
            "level": event.level,
            "kind": event.kind,
            "node_id": event.node_id,
            "job": event.job_id,
            "message": event.message,
            "data": event.data,
        }


class ExecutionSerializer(serializers.ModelSerializer):
    """List row: no nodes, jobs or log."""

    workflow = serializers.CharField(source="workflow.slug")
    version = serializers.IntegerField(source="version.number")
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    jobs_total = serializers.SerializerMethodField()
    jobs_done = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "id",
            "workflow",
            "version",
            "status",
            "trigger",
            "labels",
            "error",
            "rerun_of",
            "parent",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "jobs_total",
            "jobs_done",
        ]

    def to_representation(self, execution: Execution) -> dict:
        """DRF's generic dict built directly (a test compares them): a list page is a hundred
        rows, and DRF's per-field machinery was a third of its time."""
        zone = timezone.get_current_timezone()
        total, done = self.job_counts(execution)
        duration_ms = execution.duration_ms
        return {
            "id": str(execution.id),
            "workflow": execution.workflow.slug,
            "version": int(execution.version.number),
            "status": execution.status,
            "trigger": execution.trigger,
            "labels": execution.labels,
            "error": execution.error,
            "rerun_of": execution.rerun_of_id,
            "parent": execution.parent_id,
            "created_at": datetime_representation(execution.created_at, zone),
            "started_at": datetime_representation(execution.started_at, zone),
            "finished_at": datetime_representation(execution.finished_at, zone),
            "duration_ms": None if duration_ms is None else int(duration_ms),
            "jobs_total": total,
            "jobs_done": done,
        }

    def job_counts(self, execution: Execution) -> tuple[int, int]:
        return self.context.get("job_counts", {}).get(execution.pk, (0, 0))

    def get_jobs_total(self, execution: Execution) -> int:
        return self.job_counts(execution)[0]

    def get_jobs_done(self, execution: Execution) -> int:
        return self.job_counts(execution)[1]


class NodeStateSerializer(serializers.Serializer):
    """A node of the run's definition and how far it got (`ExecutionDetail.nodes`)."""

    id = serializers.CharField()
    type = serializers.CharField()
    action = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)


class ChildExecutionSerializer(serializers.Serializer):
    """A sub-workflow run started by one of this run's nodes (`ExecutionDetail.children`)."""

    id = serializers.UUIDField()
    workflow = serializers.CharField()
    status = serializers.ChoiceField(choices=Execution._meta.get_field("status").choices)
    node_id = serializers.CharField(allow_blank=True)


class ExecutionDetailSerializer(serializers.ModelSerializer):
    workflow = serializers.CharField(source="workflow.slug")
    version = serializers.IntegerField(source="version.number")
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    nodes = serializers.SerializerMethodField()
    jobs = JobSerializer(many=True, read_only=True)
    log = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()
    definition = serializers.JSONField(source="version.definition", read_only=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "workflow",
            "version",
            "status",
            "trigger",
            "inputs",
            "vars",
            "outputs",
            "labels",
            "error",
            "rerun_of",
            "parent",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "nodes",
            "jobs",
            "approvals",
            "children",
            "parent_node_id",
            "log",
            "definition",
        ]

    @extend_schema_field(NodeStateSerializer(many=True))
    def get_nodes(self, execution: Execution) -> list[dict]:
        spec = spec_for_version(execution.version)
        return [
            {
                "id": node.id,
                "type": node.type,
                "action": node.action,
                "status": execution.nodes.get(node.id, {}).get("status", "pending"),
                "reason": execution.nodes.get(node.id, {}).get("reason", ""),
            }
            for node in spec.nodes.values()
        ]

    @extend_schema_field(EventSerializer(many=True))
    def get_log(self, execution: Execution) -> list[dict]:
        events = execution.events.all().order_by("-id")[:DETAIL_LOG_LIMIT]
        return EventSerializer(reversed(list(events)), many=True).data

    @extend_schema_field(lazy_serializer("approvals.serializers.ApprovalSerializer")(many=True))
    def get_approvals(self, execution: Execution) -> list:
        from approvals.serializers import ApprovalSerializer

        return ApprovalSerializer(
            execution.approvals.select_related("decided_by").all(), many=True, context={"flat": 1}
        ).data

    @extend_schema_field(ChildExecutionSerializer(many=True))
    def get_children(self, execution: Execution) -> list[dict]:
        return [
            {
                "id": str(child.pk),
                "workflow": child.workflow.slug,
                "status": child.status,
                "node_id": child.parent_node_id,
            }
            for child in execution.children.select_related("workflow").order_by("created_at")
        ]


def execution_detail_queryset() -> QuerySet[Execution]:
    """An execution with its workflow, version and jobs; of each job's agent only the name is
    loaded (a 200-job run otherwise decoded its agent's JSON columns 200 times)."""
    from agents.models import Agent

    agent_columns_not_shown = [
        f"agent__{field.name}"
        for field in Agent._meta.concrete_fields
        if field.name not in ("id", "name")
    ]
    jobs = (
        Job.objects.select_related("agent")
        .defer(*agent_columns_not_shown)
        .order_by("queued_at", "attempt")
    )
    return Execution.objects.select_related("workflow", "version").prefetch_related(
        Prefetch("jobs", queryset=jobs)
    )


def execution_detail_data(execution_id) -> dict:
    """The full detail shape of one execution, read fresh (after a change was committed)."""
    return ExecutionDetailSerializer(execution_detail_queryset().get(pk=execution_id)).data


def job_counts_for(execution_ids: list) -> dict:
    """`{execution_id: (total, done)}` for a page of executions in one grouped query."""
    from django.db.models import Count, Q

    rows = (
        Job.objects.filter(execution_id__in=execution_ids)
        .values("execution_id")
        .annotate(total=Count("id"), done=Count("id", filter=Q(status__in=JOB_TERMINAL)))
    )
    return {row["execution_id"]: (row["total"], row["done"]) for row in rows}


# Response/request shapes of the views that build their bodies by hand (for the OpenAPI schema).


class JobOutputChunkSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    data = serializers.CharField(allow_blank=True)


class JobOutputSerializer(serializers.Serializer):
    """`GET …/jobs/{job_id}/output/`: live chunks after `?after=` plus the assembled streams."""

    job_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Job._meta.get_field("status").choices)
    exit_code = serializers.IntegerField(allow_null=True)
    chunks = JobOutputChunkSerializer(
        many=True, help_text="Live chunks after `after` (at most 5000)."
    )
    last_seq = serializers.IntegerField(help_text="Poll again with `after=last_seq`.")
    truncated = serializers.BooleanField()
    stdout = serializers.CharField(
        allow_null=True,
        allow_blank=True,
        help_text="Full stdout; null when polling live chunks with `after` > 0.",
    )
    stderr = serializers.CharField(
        allow_null=True,
        allow_blank=True,
        help_text="Full stderr; null when polling live chunks with `after` > 0.",
    )


@extend_schema_serializer(component_name="Evaluate")
class EvaluateRequestSerializer(serializers.Serializer):
    expression = serializers.CharField(max_length=10_000)


class EvaluateResultSerializer(serializers.Serializer):
    expression = serializers.CharField()
    value = serializers.JSONField(help_text="The rendered value (any JSON value).")


class ExecutionPatchSerializer(serializers.Serializer):
    labels = LabelsField(required=False)


class ReplaySerializer(serializers.Serializer):
    from_node = serializers.CharField(max_length=100)


class BulkSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["cancel", "rerun", "delete"])
    ids = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=500)


class BulkItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    ok = serializers.BooleanField()
    status = serializers.CharField(required=False)
    execution = serializers.UUIDField(required=False)
    error = serializers.CharField(required=False)


class BulkResultSerializer(serializers.Serializer):
    results = BulkItemSerializer(many=True)
