"""Analytics API: a window summary, flaky nodes, and the diagnosis of a failed execution."""

from __future__ import annotations

from django.db import connection
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import llm_analysis
from executions.analytics import Window, flaky_nodes, summary
from executions.api import EXECUTION_ID, NO_EXECUTION, parse_uuid
from executions.diagnosis import DIAGNOSABLE, diagnose
from executions.models import Execution
from orchestrator.api_errors import Conflict
from orchestrator.roles import READ_ONLY, Action, may
from orchestrator.schema import error_responses

TAGS = ["analytics"]


class WindowQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    workflow = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise ValidationError({"until": ["must be after since"]})
        return attrs


def parse_window(request) -> Window:
    params = WindowQuerySerializer(data=request.query_params)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    workflows = [s.strip() for s in data.get("workflow", "").split(",") if s.strip()]
    return Window.build(data.get("since"), data.get("until"), workflows)


def query(name: str, description: str, type_=str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description)


WINDOW_PARAMETERS = [
    query(
        "since",
        "Executions created at or after this time (ISO 8601); default 30 days before `until`.",
        OpenApiTypes.DATETIME,
    ),
    query(
        "until",
        "Executions created before this time (ISO 8601); default now.",
        OpenApiTypes.DATETIME,
    ),
    query("workflow", "Workflow slugs, comma-separated."),
]


class DurationStatsSerializer(serializers.Serializer):
    avg = serializers.IntegerField(allow_null=True)
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)


class DayCountSerializer(serializers.Serializer):
    day = serializers.DateField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed or timed out.")
    other = serializers.IntegerField(help_text="Cancelled, or not finished yet.")


class TopWorkflowSerializer(serializers.Serializer):
    workflow = serializers.CharField()
    runs = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)


class AgentUsageSerializer(serializers.Serializer):
    agent = serializers.CharField()
    jobs = serializers.IntegerField()
    failed = serializers.IntegerField()
    busy_ms = serializers.IntegerField()


class PoolUsageSerializer(serializers.Serializer):
    pool = serializers.CharField()
    jobs = serializers.IntegerField()
    failed = serializers.IntegerField()
    busy_ms = serializers.IntegerField()


class DurationTrendSerializer(serializers.Serializer):
    workflow = serializers.CharField()
    day = serializers.DateField()
    runs = serializers.IntegerField()
    p50_ms = serializers.IntegerField(allow_null=True)
    p95_ms = serializers.IntegerField(allow_null=True)


class AnalyticsSummarySerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    workflows = serializers.ListField(child=serializers.CharField())
    total_executions = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    finished = serializers.IntegerField()
    success_rate = serializers.FloatField(
        allow_null=True, help_text="Completed / finished (null when nothing finished)."
    )
    duration_ms = DurationStatsSerializer()
    active_workflows = serializers.IntegerField()
    per_day = DayCountSerializer(many=True)
    top_workflows = TopWorkflowSerializer(many=True)
    agent_utilisation = AgentUsageSerializer(many=True)
    pool_utilisation = PoolUsageSerializer(many=True)
    duration_trend = DurationTrendSerializer(many=True)


class FlakyNodeSerializer(serializers.Serializer):
    workflow = serializers.CharField()
    node = serializers.CharField()
    runs = serializers.IntegerField(help_text="Executions in the window that ran this node.")
    flaky_runs = serializers.IntegerField(help_text="Runs where a retry passed after a failure.")
    alternating_runs = serializers.IntegerField(
        help_text="Runs whose outcome differs from the previous run of the node on the same "
        "version with the same inputs."
    )
    failed_runs = serializers.IntegerField(help_text="Runs where the node failed for good.")
    share = serializers.FloatField(
        allow_null=True, help_text="Runs that were flaky or alternating / runs."
    )
    evidence = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="Up to 5 flaky or alternating execution ids, newest first.",
    )


class FlakyReportSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    workflows = serializers.ListField(child=serializers.CharField())
    nodes = FlakyNodeSerializer(many=True)


class CauseSerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="connection_refused, dns, tls, auth, timeout, agent_lost, template_error, "
        "http_status, exit_code, assertion, … or error."
    )
    summary = serializers.CharField()
    evidence = serializers.DictField(
        help_text="job, attempt, agent, pool, error_kind, error, exit_code, http_status, "
        "stderr_tail, node_reason, execution_error."
    )


class ChangesSerializer(serializers.Serializer):
    last_success = serializers.UUIDField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    version = serializers.DictField(help_text="{failed_run, last_success, changed}")
    inputs = serializers.DictField(
        allow_null=True, help_text="{added, removed, changed}: input keys."
    )
    agent = serializers.DictField(help_text="{failed_run, last_success, changed}")
    duration_ms = serializers.DictField(help_text="{failed_run, last_success}")


class HistorySerializer(serializers.Serializer):
    window_days = serializers.IntegerField()
    runs = serializers.IntegerField()
    failures = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)
    previous_failure = serializers.UUIDField(allow_null=True)


class FailureAnalysisSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField()
    answer = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True, help_text="Why the LLM gave no answer.")
    prompt = serializers.CharField(help_text="What was sent (secrets masked).")
    created_at = serializers.DateTimeField()


class DiagnoseRequestSerializer(serializers.Serializer):
    llm = serializers.BooleanField(
        default=False,
        help_text="Also ask the configured LLM (SWITCHYARD_LLM_BASE_URL) and store its answer.",
    )


class DiagnosisSerializer(serializers.Serializer):
    execution = serializers.UUIDField()
    workflow = serializers.CharField()
    status = serializers.CharField()
    failed_node = serializers.CharField(allow_null=True)
    cause = CauseSerializer()
    changes = ChangesSerializer()
    history = HistorySerializer()
    suggestion = serializers.CharField()
    llm_enabled = serializers.BooleanField()
    llm_analysis = FailureAnalysisSerializer(
        allow_null=True, help_text="The latest stored LLM analysis of this execution."
    )


class AnalyticsNeedPostgres(APIException):
    status_code = 501
    default_detail = (
        "Analytics need PostgreSQL; this server runs on SQLite, the embedded development "
        "database. Set DATABASE_URL to a PostgreSQL database."
    )
    default_code = "not_implemented"


NEEDS_POSTGRES = "The server runs on SQLite (`make run`'s embedded database): no analytics."


def require_postgres() -> None:
    """The rollups and window queries are PostgreSQL SQL; say so instead of failing."""
    if connection.vendor != "postgresql":
        raise AnalyticsNeedPostgres()


class SummaryView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="analytics_summary",
        summary="Execution analytics for a time window",
        description="Totals, success rate, duration percentiles, per-day counts, top workflows, "
        "agent and pool utilisation and per-workflow duration trends. Default window: the "
        "last 30 days.",
        tags=TAGS,
        parameters=WINDOW_PARAMETERS,
        responses={
            200: AnalyticsSummarySerializer,
            **error_responses(400, 401, 501, e501=NEEDS_POSTGRES),
        },
    )
    def get(self, request):
        require_postgres()
        return Response(AnalyticsSummarySerializer(summary(parse_window(request))).data)


class FlakyView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="analytics_flaky",
        summary="Flaky nodes: passed on a retry, or alternated pass/fail on the same version "
        "and inputs",
        tags=TAGS,
        parameters=WINDOW_PARAMETERS,
        responses={
            200: FlakyReportSerializer,
            **error_responses(400, 401, 501, e501=NEEDS_POSTGRES),
        },
    )
    def get(self, request):
        require_postgres()
        return Response(FlakyReportSerializer(flaky_nodes(parse_window(request))).data)


def diagnosis_with_llm(execution: Execution, user, ask: bool) -> dict:
    """The rule-based diagnosis plus the latest stored LLM analysis (asking the LLM for a new
    one first when `ask`)."""
    result = diagnose(execution)
    stored = (
        llm_analysis.analyse(execution, result, user) if ask else llm_analysis.latest(execution)
    )
    result["llm_enabled"] = llm_analysis.enabled()
    result["llm_analysis"] = stored
    return result


class DiagnoseView(APIView):
    role_rules = {"POST": Action.READ}

    @extend_schema(
        operation_id="executions_diagnose",
        summary="Diagnose a failed execution",
        description="Rule-based and deterministic; nothing is stored. With `llm: true` the "
        "same evidence is also sent to the configured OpenAI-compatible endpoint and its "
        "answer is stored with the execution (`llm_analysis`).",
        tags=["executions"],
        parameters=[EXECUTION_ID],
        request=DiagnoseRequestSerializer,
        responses={
            200: DiagnosisSerializer,
            **error_responses(
                400,
                401,
                403,
                404,
                409,
                e403="`llm: true` needs the operator role.",
                e409="The execution has not failed.",
                **NO_EXECUTION,
            ),
        },
    )
    def post(self, request, execution_id: str):
        params = DiagnoseRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if params.validated_data["llm"] and not may(request.user, Action.OPERATE):
            raise PermissionDenied(
                "Asking the LLM (a paid call, stored with the run) needs the operator role."
            )
        execution = get_object_or_404(
            Execution.objects.select_related("workflow", "version"), pk=parse_uuid(execution_id)
        )
        if execution.status not in DIAGNOSABLE:
            raise Conflict(f"The execution is {execution.status}, not failed.")
        if params.validated_data["llm"] and not llm_analysis.enabled():
            raise ValidationError({"llm": ["no LLM backend is configured"]})
        return Response(
            DiagnosisSerializer(
                diagnosis_with_llm(execution, request.user, params.validated_data["llm"])
            ).data
        )


@extend_schema(exclude=True)
class SummaryNoSlashView(SummaryView):
    """`/analytics/summary` as written in DESIGN §7; documented under the trailing-slash path."""


@extend_schema(exclude=True)
class FlakyNoSlashView(FlakyView):
    """`/analytics/flaky`, as written in DESIGN §7."""
