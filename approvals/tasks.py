"""Control-worker tasks for approvals (notifications leave the request path). Bound to the
control app, not shared: agents build their own Celery app and must not inherit them."""

from __future__ import annotations

from approvals.notifications import notify
from orchestrator.celery_app import app


@app.task(name="approvals.tasks.notify_approvers", shared=False, ignore_result=True, acks_late=True)
def notify_approvers(
    request_id: int, reason: str = "Approval needed", escalation: bool = False
) -> dict:
    return notify(request_id, reason, escalation)
