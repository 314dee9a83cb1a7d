"""Web UI page of approval requests: the pending ones live (group `approvals`), recent decisions."""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.serializers import ApprovalSerializer
from approvals.services import may_decide
from orchestrator.roles import Action, require_action

RECENT = 25


def approvals_data(user) -> dict:
    pending = list(
        ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
        .select_related("execution__workflow", "decided_by")
        .order_by("-created_at")[:500]
    )
    recent = list(
        ApprovalRequest.objects.exclude(status=ApprovalStatus.PENDING)
        .select_related("execution__workflow", "decided_by")
        .order_by("-decided_at", "-created_at")[:RECENT]
    )
    data = {
        "pending": ApprovalSerializer(pending, many=True).data,
        "recent": ApprovalSerializer(recent, many=True).data,
        "rights": {str(a.pk): may_decide(a, user) or "" for a in pending},
    }
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


@require_action(Action.READ)
@require_GET
def approvals_list(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/list.html", {"boot": approvals_data(request.user)})


@require_action(Action.READ, json=True)
@require_GET
def approvals_json(request: HttpRequest) -> JsonResponse:
    """What the page re-renders on an `approvals.changed` push (with the viewer's rights)."""
    return JsonResponse(approvals_data(request.user))
