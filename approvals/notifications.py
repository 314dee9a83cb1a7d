"""Telling approvers: e-mail with per-person signed decision links, and a chat message.

Links are signed (Django's signing) and recorded: single use, expiring with the request, bound
to one user (e-mail: the recipient may decide without logging in) or to whoever is logged in
when it is used (chat). A GET only shows a confirmation page; deciding is a POST.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import signing
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalAudit, ApprovalLink, ApprovalRequest, ApprovalStatus
from orchestrator.engine import TemplateError, render_value
from orchestrator.roles import APPROVING_ROLES
from orchestrator.secret_store import referenced_secrets, reveal

logger = logging.getLogger("switchyard.approvals")
LINK_SALT = "switchyard.approval-link"


def audit(
    request: ApprovalRequest,
    action: str,
    *,
    user=None,
    via: str = "",
    note: str = "",
    data: dict | None = None,
) -> None:
    ApprovalAudit.objects.create(
        request=request, action=action, user=user, via=via, note=note, data=data or {}
    )


def eligible_users(request: ApprovalRequest, extra: dict | None = None):
    """Users who may decide: named users and group members (plus escalation targets), or, when
    none are named, everyone with the approvals.respond permission; only holders of an approving
    role (see orchestrator.roles); never the run's starter unless self-approval is allowed."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name__in=APPROVING_ROLES))
    )
    named = {**request.approvers}
    for key, values in (extra or {}).items():
        named[key] = [*named.get(key, []), *values]
    if named.get("users") or named.get("groups"):
        users = users.filter(
            Q(username__in=named.get("users") or []) | Q(groups__name__in=named.get("groups") or [])
        )
    else:
        permission = Permission.objects.filter(
            codename="respond", content_type__app_label="approvals"
        ).first()
        users = users.filter(
            Q(is_superuser=True)
            | Q(user_permissions=permission)
            | Q(groups__permissions=permission)
        )
    if not request.allow_self_approval and request.execution.created_by_id:
        users = users.exclude(pk=request.execution.created_by_id)
    return users.distinct()


def link_expiry(request: ApprovalRequest):
    return request.expires_at or timezone.now() + timedelta(
        seconds=settings.SWITCHYARD_APPROVAL_LINK_TTL
    )


def make_link(request: ApprovalRequest, *, user=None, via: str) -> str:
    """A new single-use decision link path (relative to the base URL)."""
    link = ApprovalLink.objects.create(
        request=request,
        user=user,
        via=via,
        nonce=secrets.token_urlsafe(24),
        expires_at=link_expiry(request),
    )
    token = signing.dumps({"n": link.nonce}, salt=LINK_SALT, compress=True)
    return f"/approvals/link/{token}/"


def resolve_link(token: str) -> ApprovalLink | None:
    """The link behind a token, if the signature is valid (use/expiry are checked by callers)."""
    try:
        payload = signing.loads(token, salt=LINK_SALT)
    except signing.BadSignature:
        return None
    return (
        ApprovalLink.objects.select_related("request__execution__workflow", "user")
        .filter(nonce=payload.get("n", ""))
        .first()
    )


def describe(request: ApprovalRequest) -> str:
    execution = request.execution
    lines = [
        request.message or f"Approval needed for {request.node_id}",
        "",
        f"Workflow: {execution.workflow.slug} (v{execution.version.number})",
        f"Step: {request.node_id}",
        f"Triggered by: {execution.trigger.get('kind')} {execution.trigger.get('user') or ''}",
    ]
    if execution.inputs:
        lines.append("Inputs: " + ", ".join(f"{k}={v}" for k, v in execution.inputs.items()))
    for name, value in request.context.items():
        lines.append(f"{name}: {value}")
    if request.expires_at:
        lines.append(f"Expires: {request.expires_at.isoformat()} (then it is rejected)")
    return "\n".join(lines)


def execution_url(request: ApprovalRequest) -> str:
    return f"{settings.SWITCHYARD_BASE_URL}/executions/{request.execution_id}/"


def send_emails(request: ApprovalRequest, users, reason: str) -> int:
    sent = 0
    base = settings.SWITCHYARD_BASE_URL
    subject = f"[Switchyard] {reason}: {request.execution.workflow.slug} / {request.node_id}"
    for user in users:
        if not user.email:
            continue
        approve = base + make_link(request, user=user, via="email")
        reject = base + make_link(request, user=user, via="email")
        body = (
            f"{describe(request)}\n\nApprove: {approve}\nReject: {reject}\n"
            f"Run: {execution_url(request)}\n\n"
            "Each link opens a confirmation page; nothing is decided until you confirm."
        )
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        sent += 1
    return sent


def chat_webhook_url(request: ApprovalRequest) -> str:
    template = request.notify.get("chat_webhook") or settings.SWITCHYARD_APPROVAL_CHAT_WEBHOOK
    if not template:
        return ""
    names = referenced_secrets(template)
    context: dict[str, Any] = {"secrets": reveal(request.execution.workflow, names)}
    return str(render_value(template, context, "notify.chat_webhook"))


def post_chat(request: ApprovalRequest, reason: str) -> bool:
    try:
        url = chat_webhook_url(request)
    except TemplateError as error:
        logger.warning("approval %s: chat webhook not rendered: %s", request.pk, error)
        return False
    if not url:
        return False
    import agents.agent.actions  # noqa: F401  (loads the agent's HTTP helpers in their order)
    from agents.agent.netguard import NetworkPolicy
    from agents.agent.safehttp import HttpRequest, fetch

    link = settings.SWITCHYARD_BASE_URL + make_link(request, via="chat")
    text = f"*{reason}*\n{describe(request)}\nDecide: {link}\nRun: {execution_url(request)}"
    policy = NetworkPolicy.for_job(settings.SWITCHYARD_NETWORK_ALLOW)
    try:
        result = asyncio.run(fetch(HttpRequest.with_json("POST", url, {"text": text}), policy))
    except Exception as error:
        logger.warning("approval %s: chat webhook failed: %s", request.pk, error)
        return False
    return 200 <= result.get("status", 0) < 300


def notify(request_id: int, reason: str = "Approval needed", escalation: bool = False) -> dict:
    """Send the request's notifications (called by the control worker after commit)."""
    request = (
        ApprovalRequest.objects.select_related("execution__workflow", "execution__version")
        .filter(pk=request_id)
        .first()
    )
    if request is None or request.status != ApprovalStatus.PENDING:
        return {"emails": 0, "chat": False}
    users = (
        eligible_users(request, {}).filter(
            Q(username__in=request.escalate_to.get("users") or [])
            | Q(groups__name__in=request.escalate_to.get("groups") or [])
        )
        if escalation
        else eligible_users(request)
    )
    emails = send_emails(request, users, reason) if request.notify.get("email", True) else 0
    chat = post_chat(request, reason)
    audit(
        request,
        "escalation_sent" if escalation else "notified",
        via="email" if emails else ("chat" if chat else ""),
        data={"emails": emails, "chat": chat},
    )
    return {"emails": emails, "chat": chat}
