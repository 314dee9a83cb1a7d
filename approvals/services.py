"""Deciding approval requests: who may, quorum, one outcome under concurrency, expiry."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from approvals.models import ApprovalAudit, ApprovalRequest, ApprovalStatus
from executions.advancing import (
    Advancer,
    ExecutionConflict,
    enqueue_notification,
    lock_execution,
)
from executions.recorder import EventRecorder
from orchestrator.roles import Action, may
from orchestrator.services import spec_for_version


class DecisionRefused(Exception):
    """The user may not decide this request (HTTP 403)."""


def may_decide(request: ApprovalRequest, user) -> str | None:
    """None if `user` may decide `request` now, else the reason (checked at decision time): the
    approver role first, then the node's named approvers (if any) and its self-approval rule."""
    if not user.is_active:
        return "inactive user"
    starter_id = request.execution.created_by_id
    if starter_id == user.pk and not request.allow_self_approval:
        return "you started this run; the workflow does not allow self-approval"
    if not may(user, Action.APPROVE):
        return "deciding approvals needs the approver or admin role"
    named_users = request.approvers.get("users") or []
    named_groups = request.approvers.get("groups") or []
    if user.is_superuser or not (named_users or named_groups):
        return None
    if user.username in named_users:
        return None
    if user.groups.filter(name__in=named_groups).exists():
        return None
    return "you are not one of this request's approvers"


def output_of(request: ApprovalRequest) -> dict:
    return {
        "status": request.status,
        "respondedBy": request.decided_by.username if request.decided_by else None,
        "responseNote": request.note,
        "respondedVia": request.decided_via,
        "respondedAt": request.decided_at.isoformat() if request.decided_at else None,
        "approvals": request.votes,
    }


def resolve_gate(request: ApprovalRequest, outcome: str, reason: str, now) -> None:
    """Resume the execution along the `approved` or `rejected` edge (lock held by caller)."""
    execution = request.execution
    recorder = EventRecorder(execution.pk, now)
    advancer = Advancer(execution, spec_for_version(execution.version), recorder)
    advancer.extras.get(request.node_id, {}).pop("approval", None)
    advancer.resolve(request.node_id, outcome, reason, output=output_of(request))
    recorder.add(
        f"approval.{request.status}",
        f"approval '{request.node_id}' {request.status}: {reason}",
        level="info" if outcome == "approved" else "warning",
        node_id=request.node_id,
        data=output_of(request),
    )
    advancer.advance()


def decide(approval_id: int, user, *, approve: bool, note: str = "", via: str = "api"):
    """Record one person's vote. One rejection rejects; `quorum` distinct approvals approve.
    Concurrent decisions serialise on the execution row, so there is exactly one outcome."""
    execution_id = (
        ApprovalRequest.objects.filter(pk=approval_id).values_list("execution_id", flat=True)
    ).first()
    if execution_id is None:
        raise ApprovalRequest.DoesNotExist(approval_id)
    now = timezone.now()
    with transaction.atomic():
        execution = lock_execution(execution_id)
        request = ApprovalRequest.objects.select_for_update().get(pk=approval_id)
        request.execution = execution
        if request.status != ApprovalStatus.PENDING:
            raise ExecutionConflict(f"approval request is already {request.status}")
        refusal = may_decide(request, user)
        if refusal:
            raise DecisionRefused(refusal)
        if any(vote["user"] == user.username for vote in request.votes):
            raise ExecutionConflict("you already voted on this request")
        request.votes = [
            *request.votes,
            {
                "user": user.username,
                "approve": approve,
                "note": note,
                "via": via,
                "at": now.isoformat(),
            },
        ]
        approvals = sum(1 for vote in request.votes if vote["approve"])
        if not approve or approvals >= request.quorum:
            request.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
            request.decided_by = user
            request.decided_via = via
            request.decided_at = now
            request.note = note
        request.save()
        ApprovalAudit.objects.create(
            request=request,
            action="approve" if approve else "reject",
            user=user,
            via=via,
            note=note,
        )
        if request.status != ApprovalStatus.PENDING:
            outcome = "approved" if approve else "rejected"
            resolve_gate(request, outcome, f"{outcome} by {user.username} via {via}", now)
        else:
            recorder = EventRecorder(execution.pk, now)
            recorder.add(
                "approval.vote",
                f"{user.username} approved '{request.node_id}' ({approvals}/{request.quorum})",
                node_id=request.node_id,
            )
            recorder.flush()
    return request


def expire_request(approval_id: int, now=None) -> bool:
    """An unanswered request past its timeout follows the `rejected` edge (reason: timeout)."""
    execution_id = (
        ApprovalRequest.objects.filter(pk=approval_id).values_list("execution_id", flat=True)
    ).first()
    if execution_id is None:
        return False
    now = now or timezone.now()
    with transaction.atomic():
        execution = lock_execution(execution_id)
        request = ApprovalRequest.objects.select_for_update().get(pk=approval_id)
        if request.status != ApprovalStatus.PENDING or not request.expires_at:
            return False
        if request.expires_at > now or execution.is_terminal:
            return False
        request.execution = execution
        request.status = ApprovalStatus.EXPIRED
        request.decided_at = now
        request.note = "timeout"
        request.save()
        ApprovalAudit.objects.create(request=request, action="expired", note="timeout")
        resolve_gate(request, "rejected", "timeout", now)
    return True


def escalate_request(approval_id: int, now=None) -> bool:
    """Past `escalate.after`, widen the approvers to the escalation targets and notify them."""
    now = now or timezone.now()
    with transaction.atomic():
        request = (
            ApprovalRequest.objects.select_for_update()
            .filter(pk=approval_id, status=ApprovalStatus.PENDING, escalated_at__isnull=True)
            .first()
        )
        if request is None or not request.escalate_at or request.escalate_at > now:
            return False
        approvers = dict(request.approvers)
        for key in ("users", "groups"):
            extra = request.escalate_to.get(key) or []
            if extra and (approvers.get("users") or approvers.get("groups")):
                approvers[key] = sorted({*approvers.get(key, []), *extra})
        request.approvers = approvers
        request.escalated_at = now
        request.save(update_fields=["approvers", "escalated_at"])
        ApprovalAudit.objects.create(request=request, action="escalated", data=request.escalate_to)
        recorder = EventRecorder(request.execution_id, now)
        recorder.add(
            "approval.escalated",
            f"approval '{request.node_id}' escalated to {request.escalate_to}",
            level="warning",
            node_id=request.node_id,
        )
        recorder.flush()
        transaction.on_commit(
            lambda: enqueue_notification(request.pk, "Approval escalated", escalation=True),
            robust=True,
        )
    return True
