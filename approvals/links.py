"""One-click decision links from notifications: GET shows the request and asks to confirm,
POST decides. A link is single use and expires with the request; an e-mail link acts for its
recipient, a chat link for whoever is logged in (so it redirects to the login page first)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import View

from approvals.models import ApprovalLink, ApprovalStatus
from approvals.notifications import describe, resolve_link
from approvals.services import DecisionRefused, decide
from executions.advancing import ExecutionConflict


def page(
    request: HttpRequest,
    link: ApprovalLink | None,
    *,
    problem: str = "",
    done: str = "",
    status: int = 200,
) -> HttpResponse:
    approval = link.request if link else None
    return render(
        request,
        "approvals/decision_link.html",
        {
            "link": link,
            "approval": approval,
            "summary": describe(approval) if approval else "",
            "problem": problem,
            "done": done,
        },
        status=status,
    )


def unusable(link: ApprovalLink | None) -> str:
    if link is None:
        return "This link is not valid."
    if link.used_at:
        return "This link has already been used."
    if link.expires_at <= timezone.now():
        return "This link has expired."
    if link.request.status != ApprovalStatus.PENDING:
        return f"This request is already {link.request.status}."
    return ""


class DecisionLinkView(View):
    def acting_user(self, request: HttpRequest, link: ApprovalLink):
        return link.user or (request.user if request.user.is_authenticated else None)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        link = resolve_link(token)
        problem = unusable(link)
        if problem:
            return page(request, link, problem=problem, status=410 if link else 404)
        if self.acting_user(request, link) is None:
            return redirect_to_login(request.get_full_path())
        return page(request, link)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        link = resolve_link(token)
        problem = unusable(link)
        if problem:
            return page(request, link, problem=problem, status=410 if link else 404)
        user = self.acting_user(request, link)
        if user is None:
            return redirect_to_login(request.get_full_path())
        choice = request.POST.get("decision")
        if choice not in ("approve", "reject"):
            return page(request, link, problem="Choose approve or reject.", status=400)
        try:
            with transaction.atomic():
                claimed = ApprovalLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
                    used_at=timezone.now()
                )
                if not claimed:
                    raise ExecutionConflict("This link has already been used.")
                decide(
                    link.request_id,
                    user,
                    approve=choice == "approve",
                    note=request.POST.get("note", "")[:5000],
                    via=link.via,
                )
        except DecisionRefused as error:
            return page(request, link, problem=str(error), status=403)
        except ExecutionConflict as error:
            return page(request, link, problem=str(error), status=409)
        link.request.refresh_from_db()
        return page(request, link, done=f"Recorded: {choice}d by {user.username}.")
