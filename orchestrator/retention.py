"""Retention: delete old finished executions in short batches.

`keep: {days, count}` (settings `SWITCHYARD_RETENTION_DAYS` / `SWITCHYARD_RETENTION_COUNT`,
0 = no limit of that kind): a finished execution is purged when it finished more than `days`
ago **and** it is not among the `count` newest finished executions of its workflow. With only
one of the two set, that one alone decides; with neither, nothing is ever purged.
Running, pending and paused executions are never touched.

A workflow whose published version has a top-level `keep: {days, count}` uses that policy instead
of the global one (a key it omits is 0), so `keep: {days: 0, count: 0}` keeps its runs forever and
`keep: {count: 10}` keeps only its ten newest finished runs whatever the global settings say.

Deleting an execution cascades to its jobs, output chunks, log events, approval requests (with
their links and audit) and secret-usage rows; webhook deliveries, cron fires and child
executions keep their rows with the reference cleared.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from executions.models import EXECUTION_TERMINAL, Execution
from orchestrator.celery_app import app
from orchestrator.models import Workflow

logger = logging.getLogger("switchyard.retention")

FINISHED = sorted(EXECUTION_TERMINAL)


@dataclass(frozen=True)
class RetentionRule:
    """`keep: {days, count}` applied to the executions that `scope` selects."""

    days: int
    count: int
    scope: Q


def workflow_keeps() -> dict[int, tuple[int, int]]:
    """`{workflow id: (days, count)}` of workflows whose published version sets `keep:`."""
    rows = Workflow.objects.filter(published_version__definition__has_key="keep").values_list(
        "pk", "published_version__definition__keep"
    )
    return {pk: (int(k.get("days") or 0), int(k.get("count") or 0)) for pk, k in rows if k}


def retention_rules(days: int | None, count: int | None) -> list[RetentionRule]:
    """The global policy for workflows without `keep:`, then one rule per distinct `keep:`."""
    overrides = workflow_keeps()
    by_policy: dict[tuple[int, int], list[int]] = defaultdict(list)
    for workflow_id, policy in overrides.items():
        by_policy[policy].append(workflow_id)
    rules = [RetentionRule(days or 0, count or 0, ~Q(workflow_id__in=list(overrides)))]
    rules += [
        RetentionRule(policy[0], policy[1], Q(workflow_id__in=sorted(ids)))
        for policy, ids in sorted(by_policy.items())
    ]
    return rules


def purgeable(
    days: int | None, count: int | None, now: datetime | None = None, scope: Q | None = None
) -> QuerySet:
    """Finished executions (among `scope`) the policy allows to delete (an empty queryset
    without a policy)."""
    if not days and not count:
        return Execution.objects.none()
    scope = scope if scope is not None else Q()
    candidates = Execution.objects.filter(scope, status__in=FINISHED)
    if days:
        cutoff = (now or timezone.now()) - timedelta(days=days)
        candidates = candidates.filter(
            Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
        )
    if count:
        # Rank among every finished run of the workflow (not only the old ones), newest first.
        beyond_newest = (
            Execution.objects.filter(scope, status__in=FINISHED)
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
    """Apply `days`/`count` to workflows without their own `keep:` and each workflow's `keep:`
    to its runs, deleting oldest first, `batch` executions per transaction.

    Returns how many executions were deleted (with `dry_run`, how many would be).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = now or timezone.now()
    return sum(
        purge_by_rule(rule, batch, dry_run=dry_run, now=now)
        for rule in retention_rules(days, count)
    )


def purge_by_rule(rule: RetentionRule, batch: int, *, dry_run: bool, now: datetime) -> int:
    """Delete what one rule selects in short transactions of at most `batch` executions."""
    if dry_run:
        return purgeable(rule.days, rule.count, now, rule.scope).count()
    total = 0
    while True:
        ids = list(
            purgeable(rule.days, rule.count, now, rule.scope)
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
