"""The agent registry: pools, agents and the enrollment tokens agents register with."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AgentPool(models.Model):
    """A named group of interchangeable agents; jobs target a pool's queue `pool.<name>`."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """A registered agent process. Its token is stored only as a SHA-256 digest."""

    name = models.CharField(max_length=100, unique=True)
    pools = models.JSONField(default=list)
    labels = models.JSONField(default=dict)
    version = models.CharField(max_length=50, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    token_digest = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=16)
    enrollment_token = models.ForeignKey(
        "EnrollmentToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="agents"
    )
    is_disabled = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    running_jobs = models.JSONField(default=list)
    load = models.JSONField(default=dict)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queues(self) -> list[str]:
        return [f"pool.{pool}" for pool in self.pools] + [f"agent.{self.name}"]

    @property
    def status(self) -> str:
        if self.is_disabled or self.revoked_at:
            return "disabled"
        if self.last_heartbeat is None:
            return "offline"
        silent_for = (timezone.now() - self.last_heartbeat).total_seconds()
        if silent_for > 3 * settings.SWITCHYARD_HEARTBEAT_INTERVAL:
            return "offline"
        return "online"


class EnrollmentToken(models.Model):
    """A token an admin hands out so a new agent can register and obtain its own token."""

    description = models.CharField(max_length=200, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    pools = models.JSONField(default=list, blank=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.description}"

    def usable(self) -> bool:
        if self.revoked_at:
            return False
        if self.expires_at and self.expires_at <= timezone.now():
            return False
        return not (self.max_uses is not None and self.uses >= self.max_uses)
