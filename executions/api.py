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

from executions.filters import ExecutionFilter
from executions.models import EventLevel, Execution, ExecutionEvent, Job
from executions.serializers import (
    EventSerializer,
    ExecutionDetailSerializer,
    ExecutionSerializer,
    execution_detail_queryset,
    job_counts_for,
)
from executions.services import ExecutionConflict, cancel_execution
from orchestrator.api_errors import Conflict


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
    def get(self, request, execution_id: str, job_id: str):
        job = get_object_or_404(
            Job.objects.only("id", "status", "stdout", "stderr", "exit_code"),
            pk=parse_uuid(job_id, "job"),
            execution_id=parse_uuid(execution_id),
        )
        return Response(
            {
                "job_id": str(job.pk),
                "status": job.status,
                "exit_code": job.exit_code,
                "stdout": job.stdout,
                "stderr": job.stderr,
            }
        )


class CancelView(APIView):
    def post(self, request, execution_id: str):
        execution_pk = parse_uuid(execution_id)
        if not Execution.objects.filter(pk=execution_pk).exists():
            raise NotFound("No such execution.")
        try:
            cancel_execution(execution_pk, user=request.user)
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        execution = execution_detail_queryset().get(pk=execution_pk)
        return Response(ExecutionDetailSerializer(execution).data, status=status.HTTP_200_OK)
