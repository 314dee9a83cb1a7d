"""Workflow API: list, create, versions, publish, validate, execute."""

from __future__ import annotations

import uuid
from functools import partial

from django.db import IntegrityError
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.advancing import ExecutionConflict, start_execution
from executions.batch_start import RunRequest, start_executions
from executions.models import Execution
from executions.serializers import ExecutionDetailSerializer, execution_detail_data
from orchestrator.api_errors import Conflict, definition_error_response
from orchestrator.engine import DefinitionError
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.roles import OPERATE_POST, read_write
from orchestrator.schema import error_responses
from orchestrator.serializers import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MAX_RUNS_PER_BATCH,
    DefinitionRequestSerializer,
    ExecuteBatchRequestSerializer,
    ExecuteBatchResponseSerializer,
    ExecuteRequestSerializer,
    PublishRequestSerializer,
    ValidationResultSerializer,
    VersionListResponseSerializer,
    VersionSerializer,
    WorkflowDetailSerializer,
    WorkflowListResponseSerializer,
    WorkflowPatchSerializer,
    WorkflowSerializer,
)
from orchestrator.services import (
    add_version,
    create_workflow,
    publish_version,
    validate_definition,
)

TAGS = ["workflows"]
NO_WORKFLOW = {"e404": "No such workflow."}

WORKFLOW_QUERYSET = Workflow.objects.select_related("published_version")


def get_workflow(slug: str) -> Workflow:
    return get_object_or_404(WORKFLOW_QUERYSET, slug=slug)


def with_prefix(error: DefinitionError, prefix: str) -> DefinitionError:
    if not getattr(error, "path_prefix", None):
        error.path_prefix = prefix
    return error


class WorkflowListView(APIView):
    role_rules = read_write()

    @extend_schema(
        operation_id="workflows_list",
        summary="List workflows",
        tags=TAGS,
        request=None,
        responses={200: WorkflowListResponseSerializer, **error_responses(401)},
    )
    def get(self, request):
        return Response({"results": WorkflowSerializer(WORKFLOW_QUERYSET.all(), many=True).data})

    @extend_schema(
        operation_id="workflows_create",
        summary="Create a workflow",
        description="Creates the workflow from its definition and publishes it as version 1.",
        tags=TAGS,
        request=DefinitionRequestSerializer,
        responses={
            201: WorkflowDetailSerializer,
            **error_responses(400, 401),
        },
    )
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
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_validate",
        summary="Validate a definition without saving it",
        description=(
            "A definition with problems is answered with 200 and `valid: false`; 400 means the "
            "request itself is malformed (e.g. no `definition`)."
        ),
        tags=TAGS,
        request=DefinitionRequestSerializer,
        responses={200: ValidationResultSerializer, **error_responses(400, 401)},
    )
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
    role_rules = read_write()

    @extend_schema(
        operation_id="workflows_retrieve",
        summary="Get a workflow with its published definition",
        tags=TAGS,
        request=None,
        responses={200: WorkflowDetailSerializer, **error_responses(401, 404, **NO_WORKFLOW)},
    )
    def get(self, request, slug: str):
        return Response(WorkflowDetailSerializer(get_workflow(slug)).data)

    @extend_schema(
        operation_id="workflows_partial_update",
        summary="Activate or deactivate a workflow",
        tags=TAGS,
        request=WorkflowPatchSerializer,
        responses={
            200: WorkflowDetailSerializer,
            **error_responses(400, 401, 404, **NO_WORKFLOW),
        },
    )
    def patch(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = WorkflowPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "is_active" in serializer.validated_data:
            workflow.is_active = serializer.validated_data["is_active"]
            workflow.save(update_fields=["is_active", "updated_at"])
        return Response(WorkflowDetailSerializer(workflow).data)

    @extend_schema(
        operation_id="workflows_destroy",
        summary="Delete a workflow",
        tags=TAGS,
        request=None,
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses(
                401,
                404,
                409,
                e409="The workflow has executions; deactivate it or delete them first.",
                **NO_WORKFLOW,
            ),
        },
    )
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
    role_rules = read_write()

    @extend_schema(
        operation_id="workflows_versions_list",
        summary="List a workflow's versions",
        tags=TAGS,
        request=None,
        responses={200: VersionListResponseSerializer, **error_responses(401, 404, **NO_WORKFLOW)},
    )
    def get(self, request, slug: str):
        workflow = get_workflow(slug)
        versions = WorkflowVersion.objects.filter(workflow=workflow).select_related("created_by")
        return Response({"results": VersionSerializer(versions, many=True).data})

    @extend_schema(
        operation_id="workflows_versions_create",
        summary="Add a version (not published)",
        tags=TAGS,
        request=DefinitionRequestSerializer,
        responses={201: VersionSerializer, **error_responses(400, 401, 404, **NO_WORKFLOW)},
    )
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
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_publish",
        summary="Publish a version",
        description="Publishes `version`, or the latest version when it is omitted.",
        tags=TAGS,
        request=PublishRequestSerializer,
        responses={
            200: WorkflowDetailSerializer,
            **error_responses(400, 401, 404, e404="No such workflow or version."),
        },
    )
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = PublishRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            publish_version(workflow, serializer.validated_data.get("version"))
        except LookupError as error:
            raise NotFound("No such version.") from error
        return Response(WorkflowDetailSerializer(get_workflow(slug)).data)


CHANNEL_HEADER = OpenApiParameter(
    "X-Switchyard-Channel",
    str,
    OpenApiParameter.HEADER,
    required=False,
    enum=["api", "cli", "ui"],
    description="Where the request comes from, recorded in the trigger (default api).",
)
START_ERRORS = error_responses(
    400,
    401,
    404,
    409,
    e404="No such workflow or version.",
    e409="The workflow is inactive or has no published version.",
)


class ExecuteView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_execute",
        summary="Start an execution",
        description=(
            "Runs the published version, or `version` when given. Returns the new execution. "
            "A client starting many runs may send `Prefer: return=minimal` (RFC 7240): the "
            "answer is then only `{id, workflow, status, created_at}` with the header "
            "`Preference-Applied: return=minimal`, which spares the server reading the full "
            "detail back."
        ),
        tags=TAGS,
        parameters=[
            CHANNEL_HEADER,
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description=(
                    "Up to 200 printable characters. A repeated start with the same key for "
                    "the same workflow starts nothing and answers 200 with the first run, so a "
                    "client may retry after a lost response."
                ),
            ),
        ],
        request=ExecuteRequestSerializer,
        responses={
            201: ExecutionDetailSerializer,
            200: OpenApiResponse(
                ExecutionDetailSerializer,
                description="The run an earlier start with the same Idempotency-Key created.",
            ),
            **START_ERRORS,
        },
    )
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = ExecuteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = requested_version(workflow, data)
        trigger = manual_trigger(request)
        key = idempotency_key(request)
        if key and (earlier := earlier_start(workflow, key)) is not None:
            return started_response(request, earlier, status.HTTP_200_OK)
        try:
            execution = start_execution(
                workflow,
                inputs=data["inputs"],
                labels=data["labels"],
                trigger=trigger,
                user=request.user,
                version=version,
                idempotency_key=key,
            )
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        except DefinitionError as error:
            raise with_prefix(error, "") from error
        except IntegrityError:
            earlier = earlier_start(workflow, key) if key else None
            if earlier is None:
                raise
            return started_response(request, earlier, status.HTTP_200_OK)
        return started_response(request, execution, status.HTTP_201_CREATED)


class ExecuteBatchView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_execute_batch",
        summary="Start many executions",
        description=(
            f"Starts one execution per item of `runs` (1 to {MAX_RUNS_PER_BATCH}), each with "
            "its own inputs, labels and optional idempotency key, all or none: one invalid "
            "item answers 400 naming it (`runs[3].inputs.host`) and starts nothing. Answers, "
            "in order, each run's id, status and creation time. A run whose idempotency key "
            "an earlier start of the workflow used is not started again (`created: false`), "
            "so a client may retry the whole batch after a lost response. 201 when any run "
            "was started, 200 when all were started before."
        ),
        tags=TAGS,
        parameters=[
            CHANNEL_HEADER,
        ],
        request=ExecuteBatchRequestSerializer,
        responses={
            201: ExecuteBatchResponseSerializer,
            200: OpenApiResponse(
                ExecuteBatchResponseSerializer,
                description="Every run was started earlier with the same idempotency key.",
            ),
            **START_ERRORS,
        },
    )
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        serializer = ExecuteBatchRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = requested_version(workflow, data)
        runs = [RunRequest(**run) for run in data["runs"]]
        start = partial(
            start_executions,
            workflow,
            runs,
            trigger=manual_trigger(request),
            user=request.user,
            version=version,
        )
        try:
            try:
                started = start()
            except IntegrityError:
                started = start()  # another start took a key meanwhile: answer with its run
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        except DefinitionError as error:
            raise with_prefix(error, "") from error
        results = [
            {
                "id": str(run.id),
                "workflow": workflow.slug,
                "status": run.status,
                "created_at": run.created_at,
                "created": run.created,
            }
            for run in started
        ]
        code = status.HTTP_201_CREATED if any(r.created for r in started) else status.HTTP_200_OK
        return Response({"results": results}, status=code)


def requested_version(workflow: Workflow, data: dict) -> WorkflowVersion | None:
    """The version a start names (None for the published one); 404 when there is none."""
    if "version" not in data:
        return None
    version = WorkflowVersion.objects.filter(workflow=workflow, number=data["version"]).first()
    if version is None:
        raise NotFound("No such version.")
    return version


def manual_trigger(request) -> dict[str, str]:
    channel = request.headers.get("X-Switchyard-Channel", "api")
    return {
        "kind": "manual",
        "user": request.user.username,
        "channel": channel if channel in ("api", "cli", "ui") else "api",
    }


def prefers_minimal(request) -> bool:
    """Whether the client sent `Prefer: return=minimal` (RFC 7240)."""
    preferences = request.headers.get("Prefer", "").replace(";", ",").split(",")
    return any(p.strip().lower() == "return=minimal" for p in preferences)


def started_response(request, execution: Execution | uuid.UUID, code: int) -> Response:
    """The answer to a start: the execution's detail, or its id, workflow, status and creation
    time when the client prefers a minimal answer."""
    if not prefers_minimal(request):
        execution_id = execution.pk if isinstance(execution, Execution) else execution
        return Response(execution_detail_data(execution_id), status=code)
    if not isinstance(execution, Execution):
        execution = Execution.objects.select_related("workflow").get(pk=execution)
    body = {
        "id": str(execution.pk),
        "workflow": execution.workflow.slug,
        "status": execution.status,
        "created_at": execution.created_at,
    }
    response = Response(body, status=code)
    response["Preference-Applied"] = "return=minimal"
    return response


def idempotency_key(request) -> str:
    """The request's `Idempotency-Key` header ("" without one); 400 when unusable."""
    key = request.headers.get("Idempotency-Key", "")
    if key and (len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isprintable()):
        raise ValidationError(
            {"Idempotency-Key": [f"must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable characters"]}
        )
    return key


def earlier_start(workflow: Workflow, key: str):
    return (
        Execution.objects.filter(workflow=workflow, idempotency_key=key)
        .values_list("pk", flat=True)
        .first()
    )
