"""Retention: delete old finished executions in short batches.

`keep: {days, count}` (settings `SWITCHYARD_RETENTION_DAYS` / `SWITCHYARD_RETENTION_COUNT`,
0 = no limit of that kind): a finished execution is purged when it finished more than `days`
ago **and** it is not among the `count` newest finished executions of its workflow. With only
one of the two set, that one alone decides; with neither, nothing is ever purged.
Running, pending and paused executions are never touched.

Deleting an execution cascades to its jobs, output chunks, log events, approval requests (with
their links and audit) and secret-usage rows; webhook deliveries, cron fires and child
executions keep their rows with the reference cleared.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from executions.models import EXECUTION_TERMINAL, Execution
from orchestrator.celery_app import app

logger = logging.getLogger("switchyard.retention")

FINISHED = sorted(EXECUTION_TERMINAL)


def purgeable(days: int | None, count: int | None, now: datetime | None = None) -> QuerySet:
    """Finished executions the policy allows to delete (an empty queryset without a policy)."""
    if not days and not count:
        return Execution.objects.none()
    candidates = Execution.objects.filter(status__in=FINISHED)
    if days:
        cutoff = (now or timezone.now()) - timedelta(days=days)
        candidates = candidates.filter(
            Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
        )
    if count:
        # Rank among every finished run of the workflow (not only the old ones), newest first.
        beyond_newest = (
            Execution.objects.filter(status__in=FINISHED)
            .annotate(
                rank=Window(
                    RowNumber(),
                    partition_by=[F("workflow_id")],
                    order_by=[F("created_at").desc(), F("id").desc()],
                )
            )
            .filter(rank__gt=count)
            .values("id")
        )
        candidates = candidates.filter(id__in=beyond_newest)
    return candidates


def purge_finished_executions(
    days: int | None,
    count: int | None,
    batch: int = 500,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> int:
    """Delete what `purgeable()` selects, oldest first, `batch` executions per transaction.

    Returns how many executions were deleted (with `dry_run`, how many would be).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = now or timezone.now()
    if dry_run:
        return purgeable(days, count, now).count()
    total = 0
    while True:
        ids = list(
            purgeable(days, count, now)
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            break
        with transaction.atomic():
            # Re-check the status in the DELETE itself; terminal states never change anyway.
            deleted, per_model = Execution.objects.filter(id__in=ids, status__in=FINISHED).delete()
        total += per_model.get(Execution._meta.label, 0)
        logger.info(
            "purged %d executions (%d rows in all)",
            per_model.get(Execution._meta.label, 0),
            deleted,
            extra={"rows": per_model},
        )
        if len(ids) < batch:
            break
    return total


@app.task(name="orchestrator.retention.purge", shared=False, ignore_result=True)
def purge(days: int | None = None, count: int | None = None, batch: int = 500) -> int:
    """Beat entry point: the configured policy unless arguments override it."""
    days = settings.SWITCHYARD_RETENTION_DAYS if days is None else days
    count = settings.SWITCHYARD_RETENTION_COUNT if count is None else count
    return purge_finished_executions(days, count, batch)
