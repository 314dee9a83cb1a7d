"""Control-worker tasks, run on the `control` queue by Celery beat."""

from __future__ import annotations

from celery import shared_task

from executions.dispatch import publish_jobs
from executions.services import expire_overdue, sweep_due_jobs


@shared_task(name="executions.tasks.sweep_jobs", ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    """Publish undispatched and due jobs, and enforce job and execution deadlines."""
    published = publish_jobs(sweep_due_jobs())
    expired = expire_overdue()
    return {"published": len(published), "expired": expired}
