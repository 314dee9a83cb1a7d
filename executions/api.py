"""Executions API: list (filters, cursor pages), detail, log, job output, cancel."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.advancing import Advancer, ExecutionConflict, cancel_execution
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
    EvaluateRequestSerializer,
    EvaluateResultSerializer,
    EventSerializer,
    ExecutionDetailSerializer,
    ExecutionSerializer,
    JobOutputSerializer,
    execution_detail_queryset,
    job_counts_for,
)
from orchestrator.api_errors import Conflict
from orchestrator.engine import TemplateError, evaluate_expression
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
    serializer_class = ExecutionSerializer
    pagination_class = ExecutionCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionFilter
    queryset = Execution.objects.select_related("workflow", "version").defer(
        "nodes", "inputs", "vars", "outputs"
    )

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        counts = job_counts_for([execution.pk for execution in page])
        serializer = self.get_serializer(page, many=True, context={"job_counts": counts})
        return self.get_paginated_response(serializer.data)


class ExecutionDetailView(APIView):
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
        execution = execution_detail_queryset().get(pk=execution_pk)
        return Response(ExecutionDetailSerializer(execution).data, status=status.HTTP_200_OK)


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
