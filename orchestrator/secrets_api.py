"""Secrets API: values are write-only; listing shows names, scope and metadata only."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.api_errors import Conflict
from orchestrator.models import Secret, Workflow
from orchestrator.roles import Action, read_write
from orchestrator.schema import error_responses
from orchestrator.secret_store import SECRET_NAME, save_secret


class SecretSerializer(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = Secret
        fields = ["name", "scope", "description", "created_by", "created_at", "updated_at"]

    def get_scope(self, secret: Secret) -> str:
        return secret.workflow.slug if secret.workflow_id else "global"


@extend_schema_serializer(component_name="SecretCreate")
class SecretWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    value = serializers.CharField(max_length=65536, trim_whitespace=False)
    scope = serializers.CharField(
        required=False, default="global", help_text="`global` or the slug of a workflow."
    )
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=300
    )

    def validate_name(self, value: str) -> str:
        if not SECRET_NAME.match(value):
            raise serializers.ValidationError(
                "use letters, digits, '_' or '-', starting with a letter or '_'"
            )
        return value


@extend_schema_serializer(component_name="SecretUpdate")
class SecretPatchSerializer(serializers.Serializer):
    value = serializers.CharField(required=False, max_length=65536, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)


class SecretListResponseSerializer(serializers.Serializer):
    results = SecretSerializer(many=True)


TAGS = ["secrets"]


SCOPE_OF_ONE = OpenApiParameter(
    "scope",
    str,
    OpenApiParameter.QUERY,
    description="The secret's scope: `global` (default) or a workflow slug.",
)
NO_SECRET = {"e404": "No such secret in that scope."}
ADMIN_ONLY = {"e403": "Only staff users may create, change or delete secrets."}


def scope_workflow(scope: str | None, field: str = "scope") -> Workflow | None:
    if not scope or scope == "global":
        return None
    workflow = Workflow.objects.filter(slug=scope).first()
    if workflow is None:
        raise ValidationError({field: [f"no workflow '{scope}' (use 'global' or a workflow slug)"]})
    return workflow


class SecretListView(APIView):
    role_rules = read_write(Action.ADMIN)

    @extend_schema(
        operation_id="secrets_list",
        summary="List secrets (names and metadata, never values)",
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "scope",
                str,
                OpenApiParameter.QUERY,
                description="Only secrets of this scope: `global` or a workflow slug.",
            )
        ],
        request=None,
        responses={
            200: SecretListResponseSerializer,
            **error_responses(400, 401, e400="Unknown scope."),
        },
    )
    def get(self, request):
        secrets = Secret.objects.select_related("workflow", "created_by")
        if "scope" in request.query_params:
            secrets = secrets.filter(workflow=scope_workflow(request.query_params["scope"]))
        return Response({"results": SecretSerializer(secrets, many=True).data})

    @extend_schema(
        operation_id="secrets_create",
        summary="Create a secret",
        tags=TAGS,
        request=SecretWriteSerializer,
        responses={
            201: SecretSerializer,
            **error_responses(
                400,
                401,
                403,
                409,
                e409="A secret with that name already exists in that scope; PATCH it.",
                **ADMIN_ONLY,
            ),
        },
    )
    def post(self, request):
        serializer = SecretWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        workflow = scope_workflow(data["scope"])
        if Secret.objects.filter(name=data["name"], workflow=workflow).exists():
            raise Conflict(f"secret '{data['name']}' already exists in that scope; PATCH it")
        secret = save_secret(
            data["name"],
            data["value"],
            workflow=workflow,
            description=data["description"],
            user=request.user,
        )
        return Response(SecretSerializer(secret).data, status=status.HTTP_201_CREATED)


class SecretDetailView(APIView):
    role_rules = read_write(Action.ADMIN)

    def get_secret(self, request, name: str) -> Secret:
        workflow = scope_workflow(request.query_params.get("scope"))
        return get_object_or_404(
            Secret.objects.select_related("workflow"), name=name, workflow=workflow
        )

    @extend_schema(
        operation_id="secrets_retrieve",
        summary="Get a secret's metadata",
        tags=TAGS,
        parameters=[SCOPE_OF_ONE],
        request=None,
        responses={200: SecretSerializer, **error_responses(400, 401, 404, **NO_SECRET)},
    )
    def get(self, request, name: str):
        return Response(SecretSerializer(self.get_secret(request, name)).data)

    @extend_schema(
        operation_id="secrets_partial_update",
        summary="Change a secret's value or description",
        tags=TAGS,
        parameters=[SCOPE_OF_ONE],
        request=SecretPatchSerializer,
        responses={
            200: SecretSerializer,
            **error_responses(400, 401, 403, 404, **ADMIN_ONLY, **NO_SECRET),
        },
    )
    def patch(self, request, name: str):
        secret = self.get_secret(request, name)
        serializer = SecretPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "value" in data:
            secret = save_secret(
                name,
                data["value"],
                workflow=secret.workflow,
                description=data.get("description", ""),
            )
        elif "description" in data:
            secret.description = data["description"]
            secret.save(update_fields=["description", "updated_at"])
        return Response(SecretSerializer(secret).data)

    @extend_schema(
        operation_id="secrets_destroy",
        summary="Delete a secret",
        tags=TAGS,
        parameters=[SCOPE_OF_ONE],
        request=None,
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses(400, 401, 403, 404, **ADMIN_ONLY, **NO_SECRET),
        },
    )
    def delete(self, request, name: str):
        self.get_secret(request, name).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
