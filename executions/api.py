"""Executions API: list (filters, cursor pages), detail, log, job output, cancel."""

from __future__ import annotations

import csv
import io
import json
import uuid

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.advancing import (
    Advancer,
    ExecutionConflict,
    cancel_execution,
    delete_execution,
    replay_execution,
    rerun_execution,
)
from executions.filters import ExecutionFilter
from executions.jobs import json_safe
from executions.models import (
    EventLevel,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    Job,
    JobOutputChunk,
)
from executions.recorder import EventRecorder
from executions.serializers import (
    BulkResultSerializer,
    BulkSerializer,
    EvaluateRequestSerializer,
    EvaluateResultSerializer,
    EventSerializer,
    ExecutionDetailSerializer,
    ExecutionPatchSerializer,
    ExecutionSerializer,
    JobOutputSerializer,
    ReplaySerializer,
    execution_detail_data,
    execution_detail_queryset,
    job_counts_for,
)
from orchestrator.api_errors import Conflict
from orchestrator.engine import TemplateError, evaluate_expression
from orchestrator.roles import OPERATE_POST, READ_ONLY, Action, read_write
from orchestrator.schema import error_responses
from orchestrator.services import spec_for_version

TAGS = ["executions"]
NO_EXECUTION = {"e404": "No such execution."}
EXECUTION_ID = OpenApiParameter("execution_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def query(name: str, description: str, type_=str, **kwargs) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, description=description, **kwargs)


LIST_FILTERS = [
    query("workflow", "Workflow slugs, comma-separated."),
    query(
        "status",
        f"Statuses, comma-separated ({', '.join(ExecutionStatus.values)}).",
    ),
    query("trigger", "Trigger kinds, comma-separated (e.g. `manual,parent`)."),
    query("since", "Created at or after this time (ISO 8601).", OpenApiTypes.DATETIME),
    query("until", "Created before this time (ISO 8601).", OpenApiTypes.DATETIME),
    query(
        "label",
        "Labels, comma-separated: `key` (has the label) or `key=value`; all must match.",
    ),
    query("q", "Text search in the workflow slug, error, inputs and trigger."),
]


class ExecutionCursorPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")


class EventCursorPagination(CursorPagination):
    page_size = 500
    max_page_size = 5000
    page_size_query_param = "page_size"
    ordering = ("id",)


def parse_uuid(raw: str, what: str = "execution") -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise NotFound(f"No such {what}.") from error


LIST_COLUMNS = (
    "id",
    "workflow_id",
    "version_id",
    "status",
    "trigger",
    "labels",
    "error",
    "rerun_of_id",
    "parent_id",
    "created_at",
    "started_at",
    "finished_at",
)


@extend_schema_view(
    get=extend_schema(
        operation_id="executions_list",
        summary="List executions, newest first",
        description="Cursor-paginated: follow `next` (or pass its `cursor`) for the next page.",
        tags=TAGS,
        parameters=LIST_FILTERS,
        responses={
            200: ExecutionSerializer(many=True),
            **error_responses(400, 401, 404, e404="Invalid cursor."),
        },
    )
)
class ExecutionListView(generics.ListAPIView):
    role_rules = READ_ONLY
    serializer_class = ExecutionSerializer
    pagination_class = ExecutionCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionFilter
    # Only the list row's columns: not the version's definition or the run's node states.
    queryset = Execution.objects.select_related("workflow", "version").only(
        *LIST_COLUMNS, "workflow__slug", "version__number"
    )

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        counts = job_counts_for([execution.pk for execution in page])
        serializer = self.get_serializer(page, many=True, context={"job_counts": counts})
        return self.get_paginated_response(serializer.data)


class ExecutionDetailView(APIView):
    role_rules = read_write()

    @extend_schema(
        operation_id="executions_retrieve",
        summary="Get an execution with its nodes, jobs, approvals and recent log",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=None,
        responses={200: ExecutionDetailSerializer, **error_responses(401, 404, **NO_EXECUTION)},
    )
    def get(self, request, execution_id: str):
        execution = get_object_or_404(execution_detail_queryset(), pk=parse_uuid(execution_id))
        return Response(ExecutionDetailSerializer(execution).data)

    @extend_schema(
        operation_id="executions_partial_update",
        summary="Edit an execution's labels",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=ExecutionPatchSerializer,
        responses={
            200: ExecutionDetailSerializer,
            **error_responses(400, 401, 404, **NO_EXECUTION),
        },
    )
    def patch(self, request, execution_id: str):
        execution = get_object_or_404(Execution, pk=parse_uuid(execution_id))
        serializer = ExecutionPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "labels" in serializer.validated_data:
            execution.labels = serializer.validated_data["labels"]
            execution.save(update_fields=["labels"])
        return Response(execution_detail_data(execution.pk))

    @extend_schema(
        operation_id="executions_destroy",
        summary="Delete a finished execution with its jobs, output and log",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=None,
        responses={
            204: None,
            **error_responses(
                401, 404, 409, e409="The execution has not finished.", **NO_EXECUTION
            ),
        },
    )
    def delete(self, request, execution_id: str):
        execution = get_object_or_404(Execution, pk=parse_uuid(execution_id))
        try:
            delete_execution(execution)
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class RerunView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="executions_rerun",
        summary="Run the same version with the same inputs again (linked via rerun_of)",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=None,
        responses={
            201: ExecutionDetailSerializer,
            **error_responses(401, 404, 409, e409="The workflow is inactive.", **NO_EXECUTION),
        },
    )
    def post(self, request, execution_id: str):
        original = get_object_or_404(
            Execution.objects.select_related("workflow", "version"), pk=parse_uuid(execution_id)
        )
        try:
            execution = rerun_execution(original, user=request.user)
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(execution_detail_data(execution.pk), status=status.HTTP_201_CREATED)


class ReplayView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="executions_replay",
        summary="Run again from one node, keeping the results of everything outside it",
        description=(
            "Nodes that are neither `from_node` nor downstream of it keep their results and "
            "outputs; `from_node` and its descendants run again."
        ),
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=ReplaySerializer,
        responses={
            201: ExecutionDetailSerializer,
            **error_responses(
                400, 401, 404, 409, e409="The execution has not finished.", **NO_EXECUTION
            ),
        },
    )
    def post(self, request, execution_id: str):
        original = get_object_or_404(
            Execution.objects.select_related("workflow", "version"), pk=parse_uuid(execution_id)
        )
        serializer = ReplaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        from_node = serializer.validated_data["from_node"]
        try:
            execution = replay_execution(original, from_node, user=request.user)
        except KeyError as error:
            raise ValidationError({"from_node": [f"no node '{from_node}' in this run"]}) from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(execution_detail_data(execution.pk), status=status.HTTP_201_CREATED)


EXPORT_FIELDS = [
    "id",
    "workflow",
    "version",
    "status",
    "trigger_kind",
    "labels",
    "error",
    "rerun_of",
    "created_at",
    "started_at",
    "finished_at",
    "duration_ms",
]
EXPORT_LIMIT = 50_000


class CSVStreamRenderer(BaseRenderer):
    """Lets `?format=csv` pass DRF's content negotiation; the view streams the body itself."""

    media_type = "text/csv"
    format = "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


@extend_schema_view(
    get=extend_schema(
        operation_id="executions_export",
        summary="Export the filtered executions as JSON or CSV",
        tags=TAGS,
        parameters=[
            *LIST_FILTERS,
            OpenApiParameter("format", str, enum=["json", "csv"], description="default json"),
        ],
        responses={
            (200, "application/json"): {"type": "array", "items": {"type": "object"}},
            (200, "text/csv"): str,
            **error_responses(400, 401),
        },
    )
)
class ExportView(generics.GenericAPIView):
    role_rules = READ_ONLY
    renderer_classes = [JSONRenderer, CSVStreamRenderer]
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionFilter
    queryset = Execution.objects.select_related("workflow", "version").order_by("-created_at")
    pagination_class = None

    def perform_content_negotiation(self, request, force=False):
        if request.query_params.get("format", "json") not in ("json", "csv"):
            if force:
                return JSONRenderer(), JSONRenderer.media_type
            raise ValidationError({"format": ["must be json or csv"]})
        return super().perform_content_negotiation(request, force)

    def rows(self, queryset):
        for execution in queryset[:EXPORT_LIMIT].iterator(chunk_size=2000):
            yield {
                "id": str(execution.pk),
                "workflow": execution.workflow.slug,
                "version": execution.version.number,
                "status": execution.status,
                "trigger_kind": execution.trigger_kind,
                "labels": execution.labels,
                "error": execution.error,
                "rerun_of": str(execution.rerun_of_id) if execution.rerun_of_id else None,
                "created_at": execution.created_at.isoformat(),
                "started_at": execution.started_at.isoformat() if execution.started_at else None,
                "finished_at": execution.finished_at.isoformat() if execution.finished_at else None,
                "duration_ms": execution.duration_ms,
            }

    def get(self, request):
        export_format = request.query_params.get("format", "json")
        if export_format not in ("json", "csv"):
            raise ValidationError({"format": ["must be json or csv"]})
        rows = self.rows(self.filter_queryset(self.get_queryset()))
        if export_format == "json":
            response = StreamingHttpResponse(json_lines(rows), content_type="application/json")
        else:
            response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="executions.{export_format}"'
        return response


def json_lines(rows):
    yield "["
    for index, row in enumerate(rows):
        yield ("," if index else "") + json.dumps(row)
    yield "]"


def csv_lines(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow(row | {"labels": json.dumps(row["labels"])})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


class BulkView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="executions_bulk",
        summary="Cancel, re-run or delete many executions",
        tags=TAGS,
        request=BulkSerializer,
        responses={200: BulkResultSerializer, **error_responses(400, 401)},
    )
    def post(self, request):
        serializer = BulkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        action = serializer.validated_data["action"]
        results = []
        for execution_id in serializer.validated_data["ids"]:
            execution = (
                Execution.objects.select_related("workflow", "version")
                .filter(pk=execution_id)
                .first()
            )
            if execution is None:
                results.append({"id": str(execution_id), "ok": False, "error": "not found"})
                continue
            try:
                if action == "cancel":
                    cancel_execution(execution.pk, user=request.user)
                    results.append({"id": str(execution_id), "ok": True, "status": "cancelled"})
                elif action == "rerun":
                    new = rerun_execution(execution, user=request.user)
                    results.append(
                        {
                            "id": str(execution_id),
                            "ok": True,
                            "status": new.status,
                            "execution": str(new.pk),
                        }
                    )
                else:
                    delete_execution(execution)
                    results.append({"id": str(execution_id), "ok": True, "status": "deleted"})
            except ExecutionConflict as error:
                results.append({"id": str(execution_id), "ok": False, "error": str(error)})
        return Response({"results": results})


@extend_schema_view(
    get=extend_schema(
        operation_id="executions_log_list",
        summary="An execution's log, oldest first",
        tags=TAGS,
        parameters=[
            EXECUTION_ID,
            query(
                "level",
                "Minimum level: this level and the more severe ones.",
                enum=list(EventLevel.values),
            ),
        ],
        responses={
            200: EventSerializer(many=True),
            **error_responses(400, 401, 404, e404="No such execution, or invalid cursor."),
        },
    )
)
class ExecutionLogView(generics.ListAPIView):
    role_rules = READ_ONLY
    serializer_class = EventSerializer
    pagination_class = EventCursorPagination

    def get_queryset(self):
        execution_id = parse_uuid(self.kwargs["execution_id"])
        if not Execution.objects.filter(pk=execution_id).exists():
            raise NotFound("No such execution.")
        queryset = ExecutionEvent.objects.filter(execution_id=execution_id)
        level = self.request.query_params.get("level")
        if level:
            order = list(EventLevel.values)
            if level not in order:
                raise ValidationError({"level": [f"must be one of {', '.join(order)}"]})
            queryset = queryset.filter(level__in=order[order.index(level) :])
        return queryset


class JobOutputView(APIView):
    """Full output of a job. While it runs, `?after=<seq>` returns the live chunks after `seq`
    (poll with the returned `last_seq`); once finished, the stored output."""

    role_rules = READ_ONLY

    @extend_schema(
        operation_id="executions_job_output_retrieve",
        summary="A job's output (live while it runs)",
        tags=TAGS,
        parameters=[
            EXECUTION_ID,
            JOB_ID,
            query(
                "after",
                "Only live chunks with `seq` greater than this (default 0: everything).",
                int,
                default=0,
            ),
        ],
        request=None,
        responses={
            200: JobOutputSerializer,
            **error_responses(400, 401, 404, e404="No such execution or job."),
        },
    )
    def get(self, request, execution_id: str, job_id: str):
        job = get_object_or_404(
            Job.objects.only(
                "id", "status", "stdout", "stderr", "exit_code", "output_seq", "output_truncated"
            ),
            pk=parse_uuid(job_id, "job"),
            execution_id=parse_uuid(execution_id),
        )
        raw_after = request.query_params.get("after", "0")
        if not raw_after.isdigit():
            raise ValidationError({"after": ["must be a non-negative integer"]})
        chunks = list(
            JobOutputChunk.objects.filter(job_id=job.pk, seq__gt=int(raw_after))
            .order_by("seq")
            .values("seq", "stream", "data")[:5000]
        )
        body = {
            "job_id": str(job.pk),
            "status": job.status,
            "exit_code": job.exit_code,
            "chunks": chunks,
            "last_seq": chunks[-1]["seq"] if chunks else int(raw_after),
            "truncated": job.output_truncated,
        }
        if job.output_seq:
            streams = {"stdout": [], "stderr": []}
            if raw_after == "0":
                for chunk in chunks:
                    streams[chunk["stream"]].append(chunk["data"])
            body["stdout"] = "".join(streams["stdout"]) if raw_after == "0" else None
            body["stderr"] = "".join(streams["stderr"]) if raw_after == "0" else None
        else:
            body["stdout"], body["stderr"] = job.stdout, job.stderr
        return Response(body)


class CancelView(APIView):
    """Graceful: pending work is cancelled, in-flight jobs finish, nothing new starts."""

    role_rules = OPERATE_POST

    kill = False

    @extend_schema(
        operation_id="executions_cancel",
        summary="Cancel an execution gracefully",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=None,
        responses={
            200: ExecutionDetailSerializer,
            **error_responses(
                401, 404, 409, e409="The execution has already finished.", **NO_EXECUTION
            ),
        },
    )
    def post(self, request, execution_id: str):
        execution_pk = parse_uuid(execution_id)
        if not Execution.objects.filter(pk=execution_pk).exists():
            raise NotFound("No such execution.")
        try:
            cancel_execution(execution_pk, user=request.user, kill=self.kill)
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(execution_detail_data(execution_pk), status=status.HTTP_200_OK)


@extend_schema_view(
    post=extend_schema(
        operation_id="executions_kill",
        summary="Kill an execution, terminating its running jobs",
    )
)
class KillView(CancelView):
    """Forceful: in-flight jobs are also terminated on their agents."""

    kill = True


class EvaluateView(APIView):
    """Render an expression against a run's real context, to test templates on real data."""

    role_rules = {"POST": Action.READ}

    @extend_schema(
        operation_id="executions_evaluate",
        summary="Evaluate an expression against an execution's context",
        tags=TAGS,
        parameters=[EXECUTION_ID],
        request=EvaluateRequestSerializer,
        responses={
            200: EvaluateResultSerializer,
            **error_responses(400, 401, 404, **NO_EXECUTION),
        },
    )
    def post(self, request, execution_id: str):
        execution = get_object_or_404(
            Execution.objects.select_related("workflow", "version"), pk=parse_uuid(execution_id)
        )
        expression = request.data.get("expression") if isinstance(request.data, dict) else None
        if not isinstance(expression, str) or not expression.strip():
            raise ValidationError({"expression": ["a non-empty string is required"]})
        if len(expression) > 10_000:
            raise ValidationError({"expression": ["at most 10000 characters"]})
        advancer = Advancer(
            execution, spec_for_version(execution.version), EventRecorder(execution.pk)
        )
        try:
            value = evaluate_expression(expression, advancer.context_for(expression))
        except TemplateError as error:
            raise ValidationError({"expression": [error.message]}) from error
        return Response({"expression": expression, "value": json_safe(value)})
