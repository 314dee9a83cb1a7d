"""Models of the web UI: named, per-user saved views of the executions list."""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["SavedView"]


class SavedView(models.Model):
    """A user's named filter set of `/executions/` (the list's query string, without cursor)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "executions"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="unique_saved_view_name")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.name}"
