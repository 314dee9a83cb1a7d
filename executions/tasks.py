"""Control-worker tasks, run on the `control` queue by Celery beat."""

from __future__ import annotations

from celery import shared_task

from executions.sweeper import sweep


@shared_task(name="executions.tasks.sweep_jobs", ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    """Publish undispatched and due jobs, enforce deadlines, fire timers, detect lost agents."""
    return sweep()
