"""Stored LLM analyses of failed executions (the rule-based diagnosis is never stored)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["FailureAnalysis"]


class FailureAnalysis(models.Model):
    """One request to the configured LLM about one failed execution: what was asked (the
    prompt, built from the rule-based evidence with secrets masked) and what came back."""

    execution = models.ForeignKey(
        "executions.Execution", on_delete=models.CASCADE, related_name="analyses"
    )
    model = models.CharField(max_length=200)
    prompt = models.TextField()
    answer = models.TextField(blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["execution", "-created_at"], name="analysis_by_execution")]

    def __str__(self) -> str:
        return f"analysis of {self.execution_id} ({self.model})"
