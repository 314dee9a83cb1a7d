"""API shapes for workflows and versions."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from orchestrator.models import Workflow, WorkflowVersion

LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "YAML or JSON text"},
            {"type": "object", "additionalProperties": {}, "description": "a parsed definition"},
        ],
        "description": "A workflow definition: YAML/JSON text or an already-parsed object.",
    }
)
class DefinitionField(serializers.Field):
    """A workflow definition: YAML/JSON text or an already-parsed object."""

    default_error_messages = {"invalid": "must be YAML/JSON text or an object"}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            if not data.strip():
                self.fail("invalid")
            if len(data) > 1_000_000:
                raise serializers.ValidationError("definition is larger than 1 MB")
            return data
        if isinstance(data, dict):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class LabelsField(serializers.DictField):
    """Free-form `key: value` labels used to filter executions."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=serializers.CharField(max_length=200, allow_blank=True), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        labels = super().to_internal_value(data)
        bad = [key for key in labels if not LABEL_KEY.match(key)]
        if bad:
            raise serializers.ValidationError(
                {key: ["label keys use letters, digits, '_', '.', '/' or '-'"] for key in bad}
            )
        if len(labels) > 50:
            raise serializers.ValidationError("at most 50 labels")
        return labels


class ErrorItemSerializer(serializers.Serializer):
    """One problem: where (`definition.nodes[2].on.success`, `''` for the request) and what."""

    path = serializers.CharField(allow_blank=True)
    message = serializers.CharField()


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx response (see `orchestrator.api_errors`)."""

    detail = serializers.CharField()
    errors = ErrorItemSerializer(many=True)


@extend_schema_serializer(component_name="WorkflowDefinition")
class DefinitionRequestSerializer(serializers.Serializer):
    definition = DefinitionField()


@extend_schema_serializer(component_name="Publish")
class PublishRequestSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False)


class RunFieldsSerializer(serializers.Serializer):
    """What each run of a start names: its inputs and labels."""

    inputs = serializers.DictField(required=False, default=dict)
    labels = LabelsField(required=False, default=dict)


@extend_schema_serializer(component_name="Execute")
class ExecuteRequestSerializer(RunFieldsSerializer):
    version = serializers.IntegerField(min_value=1, required=False)


IDEMPOTENCY_KEY_MAX_LENGTH = 200


class BatchRunSerializer(RunFieldsSerializer):
    idempotency_key = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        trim_whitespace=False,
        help_text=(
            "A run whose key an earlier start of the workflow used is not started again; its "
            "answer is that run."
        ),
    )

    def validate_idempotency_key(self, key: str) -> str:
        if key and not key.isprintable():
            raise serializers.ValidationError("must be printable characters")
        return key


MAX_RUNS_PER_BATCH = 1000


class ExecuteBatchRequestSerializer(serializers.Serializer):
    runs = BatchRunSerializer(many=True, allow_empty=False, max_length=MAX_RUNS_PER_BATCH)
    version = serializers.IntegerField(min_value=1, required=False)

    def validate_runs(self, runs: list[dict]) -> list[dict]:
        first_with: dict[str, int] = {}
        errors: list[dict] = [{} for _ in runs]
        for index, run in enumerate(runs):
            key = run["idempotency_key"]
            if key and key in first_with:
                errors[index] = {"idempotency_key": [f"repeats the key of runs[{first_with[key]}]"]}
            first_with.setdefault(key, index)
        if any(errors):
            raise serializers.ValidationError(errors)
        return runs


class StartedRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    created = serializers.BooleanField(
        help_text="False when an earlier start with the same idempotency key made this run."
    )


class ExecuteBatchResponseSerializer(serializers.Serializer):
    results = StartedRunSerializer(many=True)


@extend_schema_serializer(component_name="WorkflowUpdate")
class WorkflowPatchSerializer(serializers.Serializer):
    is_active = serializers.BooleanField(required=False)


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = WorkflowVersion
        fields = ["number", "definition", "source", "created_by", "created_at"]


class VersionSummarySerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta:
        model = WorkflowVersion
        fields = ["number", "created_by", "created_at"]


class WorkflowSerializer(serializers.ModelSerializer):
    published_version = serializers.IntegerField(
        source="published_version.number", default=None, allow_null=True
    )
    latest_version = serializers.IntegerField(source="latest_version_number")
    triggers = serializers.SerializerMethodField()
    inputs = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = [
            "slug",
            "name",
            "description",
            "is_active",
            "published_version",
            "latest_version",
            "triggers",
            "inputs",
            "created_at",
            "updated_at",
        ]

    def get_triggers(self, workflow: Workflow) -> list[dict[str, Any]]:
        version = workflow.published_version
        return list(version.definition.get("triggers", [])) if version else []

    def get_inputs(self, workflow: Workflow) -> dict[str, Any]:
        version = workflow.published_version
        return dict(version.definition.get("inputs", {})) if version else {}


class WorkflowDetailSerializer(WorkflowSerializer):
    definition = serializers.SerializerMethodField()
    versions = serializers.SerializerMethodField()

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "definition", "versions"]

    def get_definition(self, workflow: Workflow) -> dict[str, Any] | None:
        version = workflow.published_version
        return version.definition if version else None

    @extend_schema_field(VersionSummarySerializer(many=True))
    def get_versions(self, workflow: Workflow) -> list:
        versions = workflow.versions.select_related("created_by").order_by("-number")
        return VersionSummarySerializer(versions, many=True).data


# Response-only shapes: they describe what the workflow views return (for the OpenAPI schema).


class WorkflowListResponseSerializer(serializers.Serializer):
    results = WorkflowSerializer(many=True)


class VersionListResponseSerializer(serializers.Serializer):
    results = VersionSerializer(many=True)


class ValidatedNodeSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    on = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Outcome (e.g. `success`) to the ids of the nodes it leads to.",
    )


class ValidationResultSerializer(serializers.Serializer):
    """`valid: false` comes with `errors`; `valid: true` also carries `slug` and `nodes`."""

    valid = serializers.BooleanField()
    errors = ErrorItemSerializer(many=True)
    slug = serializers.CharField(required=False)
    nodes = ValidatedNodeSerializer(many=True, required=False)
