"""Control-worker tasks of the workflow domain, run on the `control` queue by Celery beat."""

from __future__ import annotations

from orchestrator.celery_app import app
from orchestrator.triggers import fire_cron_triggers as fire_due_cron_triggers


@app.task(name="orchestrator.tasks.fire_cron_triggers", shared=False, ignore_result=True)
def fire_cron_triggers() -> dict[str, int]:
    """Start one execution per due cron tick (at most once per tick across every worker)."""
    return fire_due_cron_triggers()
