"""Control-worker tasks for approvals (notifications leave the request path)."""

from __future__ import annotations

from celery import shared_task

from approvals.notifications import notify


@shared_task(name="approvals.tasks.notify_approvers", ignore_result=True, acks_late=True)
def notify_approvers(request_id: int, reason: str = "Approval needed", escalation: bool = False):
    return notify(request_id, reason, escalation)
