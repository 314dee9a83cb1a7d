"""Request and response shapes of the agent protocol and the agent registry API."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from agents.models import Agent, AgentPool, EnrollmentToken

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def validate_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise serializers.ValidationError(
            "use letters, digits, '.', '_' or '-' (max 100, starting with a letter or digit)"
        )
    return value


@extend_schema_serializer(component_name="AgentRegistration")
class RegisterSerializer(serializers.Serializer):
    enrollment_token = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=100, validators=[validate_name])
    pools = serializers.ListField(
        child=serializers.CharField(max_length=100, validators=[validate_name]),
        required=False,
        default=list,
        max_length=50,
    )
    labels = serializers.DictField(
        child=serializers.CharField(max_length=200), required=False, default=dict
    )
    version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
    hostname = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)


class HeartbeatSerializer(serializers.Serializer):
    running_jobs = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=1000
    )
    version = serializers.CharField(max_length=50, required=False, default="", allow_blank=True)
    load = serializers.DictField(required=False, default=dict)


class OutputChunkSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)
    stream = serializers.ChoiceField(choices=["stdout", "stderr"])
    data = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=1_048_576)


@extend_schema_serializer(component_name="JobOutputUpload")
class OutputSerializer(serializers.Serializer):
    lease = serializers.UUIDField()
    chunks = serializers.ListField(child=OutputChunkSerializer(), max_length=1000)


REPORTED_STATUSES = ["completed", "failed", "timeout"]


@extend_schema_serializer(component_name="JobResult")
class CompleteSerializer(serializers.Serializer):
    lease = serializers.UUIDField()
    status = serializers.ChoiceField(choices=REPORTED_STATUSES)
    exit_code = serializers.IntegerField(required=False, allow_null=True, default=None)
    stdout = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", trim_whitespace=False
    )
    stderr = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", trim_whitespace=False
    )
    outputs = serializers.DictField(required=False, allow_null=True, default=dict)
    http = serializers.DictField(required=False, allow_null=True, default=None)
    duration_ms = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0
    )
    error = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=10000
    )
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    finished_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    accept_next = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The agent can run another job on the slot this one frees: the response's "
        "`next` then carries a job already claimed for it (or null).",
    )

    def validate(self, attrs: dict) -> dict:
        for key in ("stdout", "stderr", "error"):
            attrs[key] = attrs.get(key) or ""
        attrs["outputs"] = attrs.get("outputs") or {}
        return attrs


MAX_BATCHED_REPORTS = 64


@extend_schema_serializer(component_name="BatchedJobResult")
class BatchedReportSerializer(CompleteSerializer):
    job_id = serializers.UUIDField()


class ReportBatchSerializer(serializers.Serializer):
    """Several final reports in one request (the agent groups reports finishing together)."""

    reports = BatchedReportSerializer(many=True, allow_empty=False, max_length=MAX_BATCHED_REPORTS)


class AgentSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="`online`, `offline` or `disabled`.")

    class Meta:
        model = Agent
        fields = [
            "name",
            "status",
            "pools",
            "labels",
            "version",
            "hostname",
            "last_heartbeat",
            "running_jobs",
            "load",
            "registered_at",
        ]


class AgentPoolSerializer(serializers.ModelSerializer):
    agents = serializers.SerializerMethodField()
    online = serializers.SerializerMethodField()

    class Meta:
        model = AgentPool
        fields = ["name", "description", "agents", "online"]

    def members(self, pool: AgentPool) -> list[Agent]:
        return [a for a in self.context["agents"] if pool.name in a.pools]

    def get_agents(self, pool: AgentPool) -> list[str]:
        return [agent.name for agent in self.members(pool)]

    def get_online(self, pool: AgentPool) -> int:
        return sum(1 for agent in self.members(pool) if agent.status == "online")


class EnrollmentTokenSerializer(serializers.ModelSerializer):
    pools = serializers.ListField(
        child=serializers.CharField(max_length=100, validators=[validate_name]),
        required=False,
        default=list,
    )

    class Meta:
        model = EnrollmentToken
        fields = [
            "id",
            "description",
            "prefix",
            "pools",
            "max_uses",
            "uses",
            "expires_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = ["id", "prefix", "uses", "revoked_at", "created_at"]


# Response shapes of the agent views, which build their bodies by hand (for the OpenAPI schema).


class AgentRegisteredSerializer(serializers.Serializer):
    """`POST /api/agent/v1/register`: the agent's identity and its token (shown once)."""

    name = serializers.CharField()
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    pools = serializers.ListField(child=serializers.CharField())
    labels = serializers.DictField(child=serializers.CharField())
    queues = serializers.ListField(child=serializers.CharField())
    broker_url = serializers.CharField()
    heartbeat_interval = serializers.FloatField(help_text="Seconds between heartbeats.")


class HeartbeatAckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    cancel = serializers.ListField(
        child=serializers.UUIDField(), help_text="Ids of running jobs the agent must kill now."
    )


class JobSpecSerializer(serializers.Serializer):
    """What a winning claim receives: everything the agent needs to run the job."""

    job_id = serializers.UUIDField()
    lease = serializers.UUIDField()
    execution_id = serializers.UUIDField()
    node_id = serializers.CharField()
    attempt = serializers.IntegerField()
    workflow = serializers.CharField()
    action = serializers.CharField()
    params = serializers.DictField()
    timeout_s = serializers.FloatField(allow_null=True)
    env = serializers.DictField(child=serializers.CharField())
    mask = serializers.ListField(child=serializers.CharField())
    network_allow = serializers.ListField(child=serializers.CharField())
    output_limit_bytes = serializers.IntegerField()


class JobOutputAckSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    last_seq = serializers.IntegerField()
    cancel = serializers.BooleanField(help_text="Kill the job now.")


class JobResultAckSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    applied = serializers.BooleanField(help_text="False when this report repeats an applied one.")
    next = JobSpecSerializer(
        allow_null=True,
        required=False,
        help_text="With `accept_next`: a job claimed for this agent (as a claim response).",
    )


class ReportErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="404 (no such job) or 409 (stale lease, state).")
    detail = serializers.CharField()


class BatchedReportResultSerializer(serializers.Serializer):
    """One report's outcome, in the order of the request: either the fields of a single
    report's answer, or `error`."""

    job_id = serializers.UUIDField()
    status = serializers.CharField(required=False)
    applied = serializers.BooleanField(required=False)
    next = JobSpecSerializer(allow_null=True, required=False)
    error = ReportErrorSerializer(required=False)


class ReportBatchAckSerializer(serializers.Serializer):
    results = BatchedReportResultSerializer(many=True)


class AgentListResponseSerializer(serializers.Serializer):
    results = AgentSerializer(many=True)


class AgentPoolListResponseSerializer(serializers.Serializer):
    results = AgentPoolSerializer(many=True)


class EnrollmentTokenListResponseSerializer(serializers.Serializer):
    results = EnrollmentTokenSerializer(many=True)


class EnrollmentTokenCreatedSerializer(EnrollmentTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The raw enrollment token (shown once)."
    )

    class Meta(EnrollmentTokenSerializer.Meta):
        fields = [*EnrollmentTokenSerializer.Meta.fields, "token"]
