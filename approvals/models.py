"""Approval gates: an `approval` node pauses its execution until a decision (or expiry)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ApprovalRequest(models.Model):
    execution = models.ForeignKey(
        "executions.Execution", on_delete=models.CASCADE, related_name="approvals"
    )
    node_id = models.CharField(max_length=100)
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    message = models.TextField(blank=True)
    approvers = models.JSONField(default=dict, blank=True)
    quorum = models.PositiveIntegerField(default=1)
    allow_self_approval = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalate_to = models.JSONField(default=dict, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    notify = models.JSONField(default=dict, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_via = models.CharField(max_length=10, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    votes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("respond", "Can approve or reject approval requests")]
        constraints = [
            models.UniqueConstraint(fields=["execution", "node_id"], name="unique_approval_node")
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="approval_by_status"),
            models.Index(
                fields=["expires_at"],
                name="approval_expiry",
                condition=models.Q(status="pending", expires_at__isnull=False),
            ),
            models.Index(
                fields=["escalate_at"],
                name="approval_escalation",
                condition=models.Q(status="pending", escalated_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}:{self.node_id} ({self.status})"


class ApprovalLink(models.Model):
    """A signed one-click decision link. Single use; bound to one user (e-mail) or to whoever is
    logged in when it is used (chat)."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="links")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    via = models.CharField(max_length=10)
    nonce = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.request_id}:{self.via}:{self.user_id}"


class ApprovalAudit(models.Model):
    """Who did what to an approval request, when and how (requested, notified, vote, decision,
    expiry, escalation, cancellation)."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="audit")
    action = models.CharField(max_length=20)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=10, blank=True)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.request_id}:{self.action}"
