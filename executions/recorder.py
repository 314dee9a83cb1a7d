"""Collects execution-log events during one transaction and writes them in one bulk insert."""

from __future__ import annotations

from collections.abc import Iterable
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
        flush_together([self])


def flush_together(recorders: Iterable[EventRecorder]) -> None:
    """Insert the pending events of several recorders in one statement and push each
    execution's live after commit."""
    recorders = [recorder for recorder in recorders if recorder.pending]
    if not recorders:
        return
    created = insert_rows(ExecutionEvent, [e for recorder in recorders for e in recorder.pending])
    by_execution: dict[Any, list[ExecutionEvent]] = {}
    for event in created:
        if event.pk is not None:
            by_execution.setdefault(event.execution_id, []).append(event)
    for recorder in recorders:
        recorder.pending = []
    for execution_id, events in by_execution.items():
        publish_events_after_commit(execution_id, events)
