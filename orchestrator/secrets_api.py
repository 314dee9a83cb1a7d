"""Secrets API: values are write-only; listing shows names, scope and metadata only."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.api_errors import Conflict
from orchestrator.models import Secret, Workflow
from orchestrator.secret_store import SECRET_NAME, save_secret


class IsAdminForWrites(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return bool(request.user and request.user.is_authenticated)
        return bool(request.user and request.user.is_staff)


class SecretSerializer(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Secret
        fields = ["name", "scope", "description", "created_by", "created_at", "updated_at"]

    def get_scope(self, secret: Secret) -> str:
        return secret.workflow.slug if secret.workflow_id else "global"


class SecretWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    value = serializers.CharField(max_length=65536, trim_whitespace=False)
    scope = serializers.CharField(required=False, default="global")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=300
    )

    def validate_name(self, value: str) -> str:
        if not SECRET_NAME.match(value):
            raise serializers.ValidationError(
                "use letters, digits, '_' or '-', starting with a letter or '_'"
            )
        return value


class SecretPatchSerializer(serializers.Serializer):
    value = serializers.CharField(required=False, max_length=65536, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=300)


def scope_workflow(scope: str | None, field: str = "scope") -> Workflow | None:
    if not scope or scope == "global":
        return None
    workflow = Workflow.objects.filter(slug=scope).first()
    if workflow is None:
        raise ValidationError({field: [f"no workflow '{scope}' (use 'global' or a workflow slug)"]})
    return workflow


class SecretListView(APIView):
    permission_classes = [IsAdminForWrites]

    def get(self, request):
        secrets = Secret.objects.select_related("workflow", "created_by")
        if "scope" in request.query_params:
            secrets = secrets.filter(workflow=scope_workflow(request.query_params["scope"]))
        return Response({"results": SecretSerializer(secrets, many=True).data})

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
    permission_classes = [IsAdminForWrites]

    def get_secret(self, request, name: str) -> Secret:
        workflow = scope_workflow(request.query_params.get("scope"))
        return get_object_or_404(
            Secret.objects.select_related("workflow"), name=name, workflow=workflow
        )

    def get(self, request, name: str):
        return Response(SecretSerializer(self.get_secret(request, name)).data)

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

    def delete(self, request, name: str):
        self.get_secret(request, name).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
