"""Workflows, their immutable versions, and user API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Workflow(models.Model):
    """A named workflow; its behaviour lives in numbered, immutable versions."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    published_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    latest_version_number = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class WorkflowVersion(models.Model):
    """One saved definition. Never updated after creation: executions point at the exact one."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    source = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="unique_workflow_version")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}@v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("workflow versions are immutable; save a new version instead")
        super().save(*args, **kwargs)


class ApiToken(models.Model):
    """A user's API token. Only the digest is stored; the raw key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Secret(models.Model):
    """A named secret, global or scoped to one workflow; only its ciphertext is stored."""

    name = models.CharField(max_length=100)
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.CASCADE, related_name="secrets"
    )
    ciphertext = models.TextField()
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(workflow__isnull=True),
                name="unique_global_secret",
            ),
            models.UniqueConstraint(fields=["name", "workflow"], name="unique_scoped_secret"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.workflow_id or 'global'})"


class SecretUsage(models.Model):
    """Which job of which execution received which secret (recorded at claim time)."""

    secret = models.ForeignKey(Secret, null=True, on_delete=models.SET_NULL, related_name="uses")
    name = models.CharField(max_length=100)
    execution = models.ForeignKey(
        "executions.Execution", on_delete=models.CASCADE, related_name="secret_uses"
    )
    job = models.ForeignKey("executions.Job", on_delete=models.CASCADE, related_name="secret_uses")
    used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-used_at"]
        indexes = [models.Index(fields=["secret", "-used_at"], name="secret_usage_recent")]

    def __str__(self) -> str:
        return f"{self.name} -> {self.job_id}"


from orchestrator.trigger_models import *  # noqa: E402,F403
