"""Publishing jobs to agent queues: the second half of the transactional outbox.

Job rows are committed first (status `pending`); only then is each id published to its queue.
A crash in between leaves `pending` rows that the sweeper publishes later, and a duplicate
publish is harmless because agents must win a claim before running anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.db.models.functions import Coalesce
from django.utils import timezone

from executions.commit_hooks import on_commit_robust
from executions.models import Job, JobStatus
from orchestrator.celery_app import RUN_JOB_TASK, app

logger = logging.getLogger("switchyard.dispatch")


def publish_jobs(jobs: Iterable[tuple[str, str]]) -> list[str]:
    """Send `(job_id, queue)` doorbells to the broker and mark the published rows `dispatched`."""
    published = []
    for job_id, queue in jobs:
        try:
            app.send_task(RUN_JOB_TASK, args=[str(job_id)], queue=queue, routing_key=queue)
        except Exception:
            logger.exception(
                "publishing job %s to %s failed; the sweeper will retry", job_id, queue
            )
            continue
        published.append(job_id)
    if published:
        now = timezone.now()
        Job.objects.filter(pk__in=published, status=JobStatus.PENDING).update(
            status=JobStatus.DISPATCHED, dispatched_at=Coalesce("dispatched_at", now)
        )
    return published


def publish_after_commit(jobs: list[tuple[str, str]]) -> None:
    """Publish once the surrounding transaction commits (never for a rolled-back one)."""
    if jobs:
        on_commit_robust(partial(publish_jobs, list(jobs)))
