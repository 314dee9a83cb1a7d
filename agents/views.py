"""Web UI pages of the agent fleet: the list (live via the `agents` group) and one agent."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from agents.models import Agent, AgentPool
from agents.serializers import AgentPoolSerializer, AgentSerializer
from executions.models import Job
from orchestrator.roles import Action, may, require_action


def as_json(data) -> object:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


@require_action(Action.READ)
@require_GET
def agents_list(request: HttpRequest) -> HttpResponse:
    agents = list(Agent.objects.all())
    pools = AgentPoolSerializer(AgentPool.objects.all(), many=True, context={"agents": agents}).data
    context = {
        "is_admin": may(request.user, Action.ADMIN),
        "boot": {
            "agents": as_json(AgentSerializer(agents, many=True).data),
            "pools": as_json(pools),
            "isAdmin": may(request.user, Action.ADMIN),
            "heartbeatInterval": settings.SWITCHYARD_HEARTBEAT_INTERVAL,
        },
    }
    return render(request, "agents/list.html", context)


@require_action(Action.READ)
@require_GET
def agent_detail(request: HttpRequest, name: str) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    jobs = list(
        Job.objects.filter(agent=agent)
        .select_related("execution__workflow")
        .only(
            "id",
            "node_id",
            "action",
            "attempt",
            "status",
            "exit_code",
            "duration_ms",
            "queued_at",
            "started_at",
            "finished_at",
            "execution__id",
            "execution__status",
            "execution__workflow__slug",
        )
        .order_by("-queued_at")[:50]
    )
    context = {
        "agent": agent,
        "jobs": jobs,
        "boot": {"agent": as_json(AgentSerializer(agent).data)},
    }
    return render(request, "agents/detail.html", context)
