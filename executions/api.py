"""Executions API: list (filters, cursor pages), detail, log, job output, cancel."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.advancing import Advancer, ExecutionConflict, cancel_execution
from executions.filters import ExecutionFilter
from executions.jobs import json_safe
from executions.models import EventLevel, Execution, ExecutionEvent, Job, JobOutputChunk
from executions.recorder import EventRecorder
from executions.serializers import (
    EventSerializer,
    ExecutionDetailSerializer,
    ExecutionSerializer,
    execution_detail_queryset,
    job_counts_for,
)
from orchestrator.api_errors import Conflict
from orchestrator.engine import TemplateError, evaluate_expression
from orchestrator.services import spec_for_version


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
    def get(self, request, execution_id: str):
        execution = get_object_or_404(execution_detail_queryset(), pk=parse_uuid(execution_id))
        return Response(ExecutionDetailSerializer(execution).data)


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


class KillView(CancelView):
    """Forceful: in-flight jobs are also terminated on their agents."""

    kill = True


class EvaluateView(APIView):
    """Render an expression against a run's real context, to test templates on real data."""

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
