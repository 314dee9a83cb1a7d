"""Workflow API: list, create, versions, publish, validate, execute."""

from __future__ import annotations

from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.advancing import ExecutionConflict, start_execution
from executions.serializers import ExecutionDetailSerializer, execution_detail_queryset
from orchestrator.api_errors import Conflict, definition_error_response
from orchestrator.engine import DefinitionError
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.serializers import (
    DefinitionRequestSerializer,
    ExecuteRequestSerializer,
    PublishRequestSerializer,
    VersionSerializer,
    WorkflowDetailSerializer,
    WorkflowPatchSerializer,
    WorkflowSerializer,
)
from orchestrator.services import (
    add_version,
    create_workflow,
    publish_version,
    validate_definition,
)

WORKFLOW_QUERYSET = Workflow.objects.select_related("published_version")


def get_workflow(slug: str) -> Workflow:
    return get_object_or_404(WORKFLOW_QUERYSET, slug=slug)


def with_prefix(error: DefinitionError, prefix: str) -> DefinitionError:
    if not getattr(error, "path_prefix", None):
        error.path_prefix = prefix
    return error


class WorkflowListView(APIView):
    def get(self, request):
        return Response({"results": WorkflowSerializer(WORKFLOW_QUERYSET.all(), many=True).data})

    def post(self, request):
        serializer = DefinitionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            workflow = create_workflow(serializer.validated_data["definition"], request.user)
        except DefinitionError as error:
            raise with_prefix(error, "definition") from error
        workflow = get_workflow(workflow.slug)
        return Response(WorkflowDetailSerializer(workflow).data, status=status.HTTP_201_CREATED)


class ValidateView(APIView):
    def post(self, request):
        serializer = DefinitionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            spec = validate_definition(serializer.validated_data["definition"])
        except DefinitionError as error:
            response = definition_error_response(error, "definition")
            return Response({"valid": False, "errors": response.data["errors"]})
        return Response(
            {
                "valid": True,
                "errors": [],
                "slug": spec.slug,
                "nodes": [
                    {
                        "id": node.id,
                        "type": node.type,
                        "on": {k: list(v) for k, v in node.on.items()},
                    }
                    for node in spec.nodes.values()
                ],
            }
        )


class WorkflowDetailView(APIView):
    def get(self, request, slug: str):
        return Response(WorkflowDetailSerializer(get_workflow(slug)).data)

    def patch(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = WorkflowPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "is_active" in serializer.validated_data:
            workflow.is_active = serializer.validated_data["is_active"]
            workflow.save(update_fields=["is_active", "updated_at"])
        return Response(WorkflowDetailSerializer(workflow).data)

    def delete(self, request, slug: str):
        workflow = get_workflow(slug)
        try:
            workflow.delete()
        except ProtectedError as error:
            raise Conflict(
                "workflow has executions; deactivate it or delete its executions first"
            ) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListView(APIView):
    def get(self, request, slug: str):
        workflow = get_workflow(slug)
        versions = WorkflowVersion.objects.filter(workflow=workflow).select_related("created_by")
        return Response({"results": VersionSerializer(versions, many=True).data})

    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = DefinitionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            version = add_version(workflow, serializer.validated_data["definition"], request.user)
        except DefinitionError as error:
            raise with_prefix(error, "definition") from error
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class PublishView(APIView):
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = PublishRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            publish_version(workflow, serializer.validated_data.get("version"))
        except LookupError as error:
            raise NotFound("No such version.") from error
        return Response(WorkflowDetailSerializer(get_workflow(slug)).data)


class ExecuteView(APIView):
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = ExecuteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = None
        if "version" in data:
            version = WorkflowVersion.objects.filter(
                workflow=workflow, number=data["version"]
            ).first()
            if version is None:
                raise NotFound("No such version.")
        channel = request.headers.get("X-Switchyard-Channel", "api")
        trigger = {
            "kind": "manual",
            "user": request.user.username,
            "channel": channel if channel in ("api", "cli", "ui") else "api",
        }
        try:
            execution = start_execution(
                workflow,
                inputs=data["inputs"],
                labels=data["labels"],
                trigger=trigger,
                user=request.user,
                version=version,
            )
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        except DefinitionError as error:
            raise with_prefix(error, "") from error
        execution = execution_detail_queryset().get(pk=execution.pk)
        return Response(ExecutionDetailSerializer(execution).data, status=status.HTTP_201_CREATED)
