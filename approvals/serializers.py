from __future__ import annotations

from rest_framework import serializers

from approvals.models import ApprovalRequest


class ApprovalSerializer(serializers.ModelSerializer):
    execution = serializers.UUIDField(source="execution_id", read_only=True)
    workflow = serializers.CharField(source="execution.workflow.slug", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "execution",
            "workflow",
            "node_id",
            "status",
            "message",
            "approvers",
            "quorum",
            "allow_self_approval",
            "expires_at",
            "decided_by",
            "decided_via",
            "decided_at",
            "note",
            "votes",
            "created_at",
        ]


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
