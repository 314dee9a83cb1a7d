"""Control-worker tasks, run on the `control` queue by Celery beat. Bound to the control app,
not shared: agents build their own Celery app and must not inherit them."""

from __future__ import annotations

from executions.sweeper import sweep
from orchestrator.celery_app import app


@app.task(name="executions.tasks.sweep_jobs", shared=False, ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    """Publish undispatched and due jobs, enforce deadlines, fire timers, detect lost agents."""
    return sweep()
