"""`GET /api/v1/executions/{id}/diff/?against=…`: two executions side by side."""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api import EXECUTION_ID, NO_EXECUTION, parse_uuid
from executions.models import Execution
from executions.run_diff import compare, last_success_before
from orchestrator.roles import READ_ONLY
from orchestrator.schema import error_responses

LAST_SUCCESS = "last_success"


def executions_with_version():
    return Execution.objects.select_related("workflow", "version")


def resolve_against(execution: Execution, raw: str | None) -> Execution:
    """The execution named by `?against=` (an id or `last_success`); 400s name the parameter."""
    if not raw:
        raise ValidationError({"against": ["This query parameter is required."]})
    if raw == LAST_SUCCESS:
        found = last_success_before(execution)
        if found is None:
            raise ValidationError(
                {"against": ["this workflow has no successful run before this execution"]}
            )
        return executions_with_version().get(pk=found.pk)
    try:
        other_id = uuid.UUID(raw)
    except ValueError as error:
        raise ValidationError(
            {"against": [f"must be an execution id or '{LAST_SUCCESS}'"]}
        ) from error
    if other_id == execution.pk:
        raise ValidationError({"against": ["must be another execution"]})
    other = executions_with_version().filter(pk=other_id).first()
    if other is None:
        raise ValidationError({"against": ["no such execution"]})
    return other


class DiffSideSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    trigger_kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class NodeSideSerializer(serializers.Serializer):
    status = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    job_status = serializers.CharField(allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    agent = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class OutputDiffSerializer(serializers.Serializer):
    stdout = serializers.CharField(allow_blank=True, help_text="Unified diff of the tails.")
    stderr = serializers.CharField(allow_blank=True)


class NodeDiffSerializer(serializers.Serializer):
    node = serializers.CharField()
    left = NodeSideSerializer(allow_null=True, help_text="Null when the node did not run.")
    right = NodeSideSerializer(allow_null=True)
    changed = serializers.ListField(
        child=serializers.CharField(),
        help_text="What differs: status, exit_code, agent, error, stdout, stderr.",
    )
    output_diff = OutputDiffSerializer()


class VersionDiffSerializer(serializers.Serializer):
    left = serializers.IntegerField()
    right = serializers.IntegerField()
    changed = serializers.BooleanField()
    definition_diff = serializers.CharField(allow_blank=True)


class InputsDiffSerializer(serializers.Serializer):
    left = serializers.DictField()
    right = serializers.DictField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = serializers.ListField(child=serializers.CharField())


class DurationPairSerializer(serializers.Serializer):
    left = serializers.IntegerField(allow_null=True)
    right = serializers.IntegerField(allow_null=True)


class RunDiffSerializer(serializers.Serializer):
    left = DiffSideSerializer()
    right = DiffSideSerializer()
    version = VersionDiffSerializer()
    inputs = InputsDiffSerializer()
    duration_ms = DurationPairSerializer()
    nodes = NodeDiffSerializer(many=True)


class RunDiffView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="executions_diff",
        summary="Compare an execution with another one",
        description="`left` is the execution named by `against`, `right` this one.",
        tags=["executions"],
        parameters=[
            EXECUTION_ID,
            OpenApiParameter(
                "against",
                str,
                OpenApiParameter.QUERY,
                required=True,
                description=f"Another execution's id, or `{LAST_SUCCESS}`: the workflow's "
                "latest completed run created before this one.",
            ),
        ],
        request=None,
        responses={200: RunDiffSerializer, **error_responses(400, 401, 404, **NO_EXECUTION)},
    )
    def get(self, request, execution_id: str):
        execution = get_object_or_404(executions_with_version(), pk=parse_uuid(execution_id))
        other = resolve_against(execution, request.query_params.get("against"))
        return Response(RunDiffSerializer(compare(other, execution)).data)
