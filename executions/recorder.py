"""Collects execution-log events during one transaction and writes them in one bulk insert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from executions.live import publish_events_after_commit
from executions.models import ExecutionEvent
from orchestrator.copy_insert import insert_rows


class EventRecorder:
    def __init__(self, execution_id, now: datetime | None = None) -> None:
        self.execution_id = execution_id
        self.now = now or timezone.now()
        self.pending: list[ExecutionEvent] = []

    def add(
        self,
        kind: str,
        message: str,
        *,
        level: str = "info",
        node_id: str = "",
        job_id=None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.pending.append(
            ExecutionEvent(
                execution_id=self.execution_id,
                timestamp=timezone.now(),
                level=level,
                kind=kind,
                node_id=node_id or "",
                job_id=job_id,
                message=message,
                data=data or {},
            )
        )

    def flush(self) -> None:
        """Insert the pending events in one statement and push them live after commit."""
        if self.pending:
            created = insert_rows(ExecutionEvent, self.pending)
            self.pending = []
            publish_events_after_commit(
                self.execution_id, [event for event in created if event.pk is not None]
            )
