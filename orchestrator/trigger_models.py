"""Triggers materialised from the published version, webhook deliveries, cron fires and events.

`orchestrator.models` star-imports this module, so these models belong to the `orchestrator` app.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models

__all__ = [
    "CronFire",
    "DeliveryOutcome",
    "Event",
    "SignatureVerdict",
    "Trigger",
    "TriggerKind",
    "WebhookDelivery",
    "new_webhook_key",
]


def new_webhook_key() -> str:
    """An unguessable webhook key (192 random bits, URL-safe)."""
    return secrets.token_urlsafe(24)


class TriggerKind(models.TextChoices):
    WEBHOOK = "webhook"
    CRON = "cron"
    EVENT = "event"


class Trigger(models.Model):
    """One `triggers:` entry of a workflow's published version (webhook, cron or event).

    Rows are matched to the published definition by (position, kind), so republishing keeps a
    webhook's key; entries that disappear are deactivated, not deleted (deliveries stay)."""

    workflow = models.ForeignKey(
        "orchestrator.Workflow", on_delete=models.CASCADE, related_name="triggers"
    )
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=TriggerKind.choices)
    config = models.JSONField(default=dict)
    key = models.CharField(max_length=64, unique=True, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # cron: every tick at or before this moment has been considered (fired or skipped).
    cron_cursor = models.DateTimeField(null=True, blank=True)
    key_rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "position", "kind"], name="unique_trigger_position"
            )
        ]
        indexes = [models.Index(fields=["kind", "is_active"], name="trigger_by_kind")]

    def __str__(self) -> str:
        return f"{self.workflow_id}#{self.position} {self.kind}"


class SignatureVerdict(models.TextChoices):
    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"
    STALE = "stale"
    NOT_REQUIRED = "not_required"
    UNCHECKED = "unchecked"  # refused before the signature was looked at (size, inactive, ...)
    REDELIVERY = "redelivery"  # replayed by an operator from a delivery that was authentic


class DeliveryOutcome(models.TextChoices):
    STARTED = "started"
    DUPLICATE = "duplicate"
    FILTERED = "filtered"  # the trigger's `if:` was false
    REFUSED = "refused"


class WebhookDelivery(models.Model):
    """One request to `/hooks/{key}`, stored whatever happened to it (secrets redacted)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="deliveries")
    received_at = models.DateTimeField(auto_now_add=True)
    request_id = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    # Set only on the delivery that started a run for its idempotency key: the unique constraint
    # makes concurrent duplicates wait for it and then answer with its execution.
    dedup_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True)
    body_size = models.PositiveIntegerField(default=0)
    content_type = models.CharField(max_length=200, blank=True)
    remote_addr = models.CharField(max_length=100, blank=True)
    payload_format = models.CharField(max_length=20, blank=True)
    signature = models.CharField(
        max_length=16, choices=SignatureVerdict.choices, default=SignatureVerdict.UNCHECKED
    )
    status_code = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(
        max_length=16, choices=DeliveryOutcome.choices, default=DeliveryOutcome.REFUSED
    )
    reason = models.TextField(blank=True)
    execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_deliveries",
    )
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates"
    )
    redelivery_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="redeliveries"
    )
    redelivered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger", "dedup_key"],
                condition=models.Q(dedup_key__isnull=False),
                name="unique_webhook_dedup_key",
            )
        ]
        indexes = [
            models.Index(fields=["trigger", "-received_at"], name="delivery_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_id}:{self.id} ({self.outcome})"


class CronFire(models.Model):
    """One cron tick that fired. Unique per (trigger, scheduled_at): with several beat/worker
    processes, exactly one insert wins and only the winner starts the execution."""

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="fires")
    scheduled_at = models.DateTimeField()
    fired_at = models.DateTimeField(auto_now_add=True)
    late = models.BooleanField(default=False)
    execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cron_fires",
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-scheduled_at"]
        constraints = [
            models.UniqueConstraint(fields=["trigger", "scheduled_at"], name="unique_cron_tick")
        ]

    def __str__(self) -> str:
        return f"{self.trigger_id}@{self.scheduled_at.isoformat()}"


class Event(models.Model):
    """An incident/alert event (`POST /api/v1/events/`), linked to the executions it started."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=200)
    source = models.CharField(max_length=200, blank=True)
    dedup_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    data = models.JSONField(default=dict)
    incident_id = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # One entry per event trigger whose pattern matched: {trigger, workflow, started, reason,
    # execution}.
    matches = models.JSONField(default=list)
    executions = models.ManyToManyField(
        "executions.Execution", blank=True, related_name="trigger_events"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["type", "-received_at"], name="event_by_type")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
