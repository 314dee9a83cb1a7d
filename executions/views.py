"""Web UI pages: executions (list, detail), workflows (list, detail, editor), analytics, settings.

Pages are server-rendered Django templates. What changes live is rendered by the page's script
from the same JSON the REST API serves (embedded with `json_script`, so no inline script runs);
the pages then call the REST API with the session and follow the live socket
(`executions.consumers`). The few JSON endpoints here exist only for the UI: a light snapshot of
a run without its (possibly large) output, the log events after a sequence number (to catch up
after a reconnect), and per-user saved views of the list.
"""

from __future__ import annotations

import difflib
import json
import uuid
from datetime import timedelta
from typing import Any

import yaml
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError
from django.db.models import Count, Max, OuterRef, Prefetch, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from executions.models import (
    EXECUTION_TERMINAL,
    Execution,
    ExecutionEvent,
    ExecutionStatus,
    Job,
)
from executions.serializers import EventSerializer, ExecutionDetailSerializer, JobSerializer
from executions.ui_models import SavedView
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.roles import Action, may, require_action

TRIGGER_KINDS = ["manual", "schedule", "webhook", "event", "parent", "rerun", "replay"]
LIST_FILTER_KEYS = ["workflow", "status", "trigger", "since", "until", "label", "q"]
EVENTS_PAGE = 1000


def json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse(
        {"detail": detail, "errors": [{"path": "", "message": detail}]}, status=status
    )


def parse_uuid_or_404(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise Http404("No such execution.") from error


# ----------------------------------------------------------------------------- executions list


def list_page_data(request: HttpRequest) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """The first page the list shows, straight from the REST API's list view (same filters, same
    cursor), so the page and the API can never disagree."""
    from executions.api import ExecutionListView

    response = ExecutionListView.as_view()(request)
    if response.status_code != 200:
        errors = response.data.get("errors") if isinstance(response.data, dict) else None
        return None, errors or [{"path": "", "message": "invalid filter"}]
    return json.loads(json.dumps(response.data, cls=DjangoJSONEncoder)), []


@require_action(Action.READ)
@require_GET
def executions_list(request: HttpRequest) -> HttpResponse:
    # The newest event id before reading the page: anything newer is caught up after subscribing.
    seq = ExecutionEvent.objects.aggregate(seq=Max("id"))["seq"] or 0
    page, errors = list_page_data(request)
    filters = {key: request.GET.get(key, "") for key in LIST_FILTER_KEYS}
    saved = [
        {"id": view.pk, "name": view.name, "query": view.query}
        for view in SavedView.objects.filter(user=request.user)
    ]
    context = {
        "filters": filters,
        "statuses": [(s, s.replace("_", " ").capitalize()) for s in ExecutionStatus.values],
        "selected_statuses": [s for s in filters["status"].split(",") if s],
        "trigger_kinds": TRIGGER_KINDS,
        "workflows": list(Workflow.objects.order_by("slug").values_list("slug", flat=True)),
        "boot": {
            "page": page,
            "errors": errors,
            "filters": filters,
            "cursor": request.GET.get("cursor", ""),
            "savedViews": saved,
            "seq": seq,
        },
    }
    return render(request, "executions/list.html", context)


@require_action(Action.READ, json=True)
@require_POST
def saved_view_create(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return json_error(400, "send a JSON object")
    name = str(body.get("name", "")).strip()
    query = str(body.get("query", "")).lstrip("?")
    if not name or len(name) > 100:
        return json_error(400, "a name of 1 to 100 characters is required")
    if len(query) > 2000:
        return json_error(400, "the filter is too long to save")
    try:
        view, _ = SavedView.objects.update_or_create(
            user=request.user, name=name, defaults={"query": query}
        )
    except IntegrityError:
        return json_error(409, "a view with that name exists")
    return JsonResponse({"id": view.pk, "name": view.name, "query": view.query}, status=201)


@require_action(Action.READ, json=True)
@require_POST
def saved_view_delete(request: HttpRequest, view_id: int) -> JsonResponse:
    deleted, _ = SavedView.objects.filter(user=request.user, pk=view_id).delete()
    if not deleted:
        return json_error(404, "no such saved view")
    return JsonResponse({"deleted": view_id})


# ---------------------------------------------------------------------------- execution detail


class LiteJobSerializer(JobSerializer):
    """A job without its stdout/stderr (the output panel loads those on demand)."""

    class Meta(JobSerializer.Meta):
        fields = [f for f in JobSerializer.Meta.fields if f not in ("stdout", "stderr")]


class ExecutionStateSerializer(ExecutionDetailSerializer):
    """Everything the detail page re-renders when the run changes: the API's detail shape
    without the log (it streams separately) and without job output."""

    jobs = LiteJobSerializer(many=True, read_only=True)

    class Meta(ExecutionDetailSerializer.Meta):
        fields = [f for f in ExecutionDetailSerializer.Meta.fields if f != "log"]


def execution_state_queryset():
    return Execution.objects.select_related("workflow", "version").prefetch_related(
        Prefetch(
            "jobs",
            queryset=Job.objects.select_related("agent")
            .defer("stdout", "stderr", "secrets")
            .order_by("queued_at", "attempt"),
        )
    )


def execution_state(execution: Execution) -> dict[str, Any]:
    data = ExecutionStateSerializer(execution).data
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def brief(execution: Execution | None) -> dict[str, Any] | None:
    if execution is None:
        return None
    return {
        "id": str(execution.pk),
        "status": execution.status,
        "created_at": execution.created_at,
        "workflow": execution.workflow.slug,
    }


def approval_rights(execution: Execution, user) -> dict[str, str]:
    """For each pending approval of the run: '' if `user` may decide it, else why not."""
    from approvals.models import ApprovalStatus
    from approvals.services import may_decide

    rights = {}
    for approval in execution.approvals.filter(status=ApprovalStatus.PENDING).select_related(
        "execution"
    ):
        rights[str(approval.pk)] = may_decide(approval, user) or ""
    return rights


@require_action(Action.READ)
@require_GET
def execution_detail(request: HttpRequest, execution_id: str) -> HttpResponse:
    execution = get_object_or_404(execution_state_queryset(), pk=parse_uuid_or_404(execution_id))
    same_workflow = Execution.objects.filter(workflow_id=execution.workflow_id).select_related(
        "workflow"
    )
    previous_run = (
        same_workflow.filter(
            Q(created_at__lt=execution.created_at)
            | Q(created_at=execution.created_at, id__lt=execution.pk)
        )
        .order_by("-created_at", "-id")
        .first()
    )
    next_run = (
        same_workflow.filter(
            Q(created_at__gt=execution.created_at)
            | Q(created_at=execution.created_at, id__gt=execution.pk)
        )
        .order_by("created_at", "id")
        .first()
    )
    reruns = list(execution.reruns.select_related("workflow").order_by("-created_at")[:20])
    rerun_of = (
        Execution.objects.select_related("workflow").filter(pk=execution.rerun_of_id).first()
        if execution.rerun_of_id
        else None
    )
    parent = (
        Execution.objects.select_related("workflow").filter(pk=execution.parent_id).first()
        if execution.parent_id
        else None
    )
    events = list(execution.events.order_by("-id")[:EVENTS_PAGE])
    events.reverse()
    log = json.loads(json.dumps(EventSerializer(events, many=True).data, cls=DjangoJSONEncoder))
    context = {
        "execution": execution,
        "short_id": str(execution.pk)[:8],
        "boot": {
            "state": execution_state(execution),
            "log": log,
            "logTruncated": len(events) == EVENTS_PAGE,
            "relations": json.loads(
                json.dumps(
                    {
                        "rerunOf": brief(rerun_of),
                        "reruns": [brief(r) for r in reruns],
                        "previous": brief(previous_run),
                        "next": brief(next_run),
                        "parent": brief(parent),
                    },
                    cls=DjangoJSONEncoder,
                )
            ),
            "approvalRights": approval_rights(execution, request.user),
            "user": request.user.get_username(),
        },
    }
    return render(request, "executions/detail.html", context)


@require_action(Action.READ, json=True)
@require_GET
def execution_state_json(request: HttpRequest, execution_id: str) -> JsonResponse:
    execution = execution_state_queryset().filter(pk=parse_uuid_or_404(execution_id)).first()
    if execution is None:
        return json_error(404, "No such execution.")
    body = execution_state(execution)
    body["approval_rights"] = approval_rights(execution, request.user)
    return JsonResponse(body)


@require_action(Action.READ, json=True)
@require_GET
def execution_events_json(request: HttpRequest, execution_id: str) -> JsonResponse:
    """Log events with `id > after`, oldest first, at most 1000 (`more` says whether to ask
    again): what a page missed while its socket was down."""
    execution_pk = parse_uuid_or_404(execution_id)
    status = Execution.objects.filter(pk=execution_pk).values_list("status", flat=True).first()
    if status is None:
        return json_error(404, "No such execution.")
    raw_after = request.GET.get("after", "0")
    if not raw_after.isdigit():
        return json_error(400, "`after` must be a non-negative integer")
    events = list(
        ExecutionEvent.objects.filter(execution_id=execution_pk, id__gt=int(raw_after)).order_by(
            "id"
        )[: EVENTS_PAGE + 1]
    )
    more = len(events) > EVENTS_PAGE
    events = events[:EVENTS_PAGE]
    return JsonResponse(
        {
            "execution_id": str(execution_pk),
            "status": status,
            "events": json.loads(
                json.dumps(EventSerializer(events, many=True).data, cls=DjangoJSONEncoder)
            ),
            "seq": events[-1].pk if events else int(raw_after),
            "more": more,
        }
    )


# ------------------------------------------------------------------------------------ workflows


def definition_text(version: WorkflowVersion | None) -> str:
    if version is None:
        return ""
    if version.source and version.source.strip():
        return version.source
    return yaml.safe_dump(version.definition, sort_keys=False, allow_unicode=True)


def diff_lines(a: WorkflowVersion, b: WorkflowVersion) -> list[dict[str, str]]:
    lines = difflib.unified_diff(
        definition_text(a).splitlines(),
        definition_text(b).splitlines(),
        fromfile=f"v{a.number}",
        tofile=f"v{b.number}",
        lineterm="",
        n=3,
    )
    rows = []
    for line in lines:
        kind = "context"
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        rows.append({"kind": kind, "text": line})
    return rows


def workflow_stats():
    since = timezone.now() - timedelta(days=30)
    last = Execution.objects.filter(workflow=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        Workflow.objects.select_related("published_version")
        .annotate(
            last_status=Subquery(last.values("status")[:1]),
            last_id=Subquery(last.values("id")[:1]),
            last_at=Subquery(last.values("created_at")[:1]),
            runs_30d=Count("executions", filter=Q(executions__created_at__gte=since)),
            finished_30d=Count(
                "executions",
                filter=Q(
                    executions__created_at__gte=since,
                    executions__status__in=list(EXECUTION_TERMINAL),
                ),
            ),
            completed_30d=Count(
                "executions",
                filter=Q(executions__created_at__gte=since, executions__status="completed"),
            ),
        )
        .order_by("slug")
    )


def success_rate(workflow) -> int | None:
    if not workflow.finished_30d:
        return None
    return round(100 * workflow.completed_30d / workflow.finished_30d)


def next_cron_fires(workflow_ids: list[int], now=None) -> dict[int, Any]:
    """The earliest next tick of each workflow's active cron triggers (one query for all)."""
    from orchestrator.trigger_models import Trigger, TriggerKind
    from orchestrator.triggers import next_fire_times

    now = now or timezone.now()
    soonest: dict[int, Any] = {}
    triggers = Trigger.objects.filter(
        workflow_id__in=workflow_ids, kind=TriggerKind.CRON, is_active=True
    ).only("id", "workflow_id", "kind", "config")
    for trigger in triggers:
        fires = next_fire_times(trigger, now, 1)
        if fires and (
            trigger.workflow_id not in soonest or fires[0] < soonest[trigger.workflow_id]
        ):
            soonest[trigger.workflow_id] = fires[0]
    return soonest


@require_action(Action.READ)
@require_GET
def workflows_list(request: HttpRequest) -> HttpResponse:
    workflows = []
    listed = list(workflow_stats())
    next_runs = next_cron_fires([w.pk for w in listed])
    for workflow in listed:
        definition = workflow.published_version.definition if workflow.published_version else {}
        workflows.append(
            {
                "obj": workflow,
                "success_rate": success_rate(workflow),
                "triggers": [
                    t.get("cron") or t.get("event") or t.get("type", "")
                    for t in definition.get("triggers", [])
                ],
                "trigger_types": sorted(
                    {t.get("type", "") for t in definition.get("triggers", [])}
                ),
                "node_count": len(definition.get("nodes", [])),
                "next_run": next_runs.get(workflow.pk),
            }
        )
    return render(request, "executions/workflow_list.html", {"workflows": workflows})


def input_fields(definition: dict[str, Any]) -> list[dict[str, Any]]:
    fields = []
    for name, spec in (definition.get("inputs") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        default = spec.get("default")
        kind = spec.get("type", "string")
        fields.append(
            {
                "name": name,
                "type": kind,
                "required": bool(spec.get("required")) and default is None,
                "description": spec.get("description", ""),
                "enum": spec.get("enum") or [],
                "default": (
                    ""
                    if default is None
                    else default
                    if isinstance(default, str)
                    else json.dumps(default)
                ),
            }
        )
    return fields


def workflow_triggers(request: HttpRequest, workflow: Workflow) -> list[dict[str, Any]]:
    """The workflow's active triggers in the triggers API's shape, with the webhook URL made
    absolute with this request's host and, per secret name, where it is stored (never values)."""
    from orchestrator.secret_store import resolve
    from orchestrator.trigger_models import Trigger
    from orchestrator.triggers_api import trigger_data

    now = timezone.now()
    rows = [
        json.loads(json.dumps(trigger_data(trigger, now), cls=DjangoJSONEncoder))
        for trigger in Trigger.objects.filter(workflow=workflow, is_active=True).select_related(
            "workflow"
        )
    ]
    names = {
        name
        for row in rows
        if row["webhook"]
        for name in (row["webhook"]["secret"], row["webhook"]["secret_previous"])
        if name
    }
    stored = resolve(workflow, names) if names else {}
    for row in rows:
        webhook = row["webhook"]
        if webhook:
            webhook["url"] = request.build_absolute_uri(webhook["path"]) if webhook["path"] else ""
            webhook["secrets"] = [
                {
                    "name": name,
                    "role": role,
                    "scope": (
                        None
                        if name not in stored
                        else workflow.slug
                        if stored[name].workflow_id
                        else "global"
                    ),
                }
                for name, role in (
                    (webhook["secret"], "current"),
                    (webhook["secret_previous"], "previous"),
                )
                if name
            ]
        config = row["config"] if isinstance(row["config"], dict) else {}
        row["summary"] = ", ".join(
            f"{key}: {json.dumps(value) if not isinstance(value, str) else value}"
            for key, value in config.items()
            if key not in ("type", "name", "secret", "secret_previous")
        )
    return rows


@require_action(Action.READ)
@require_GET
def workflow_detail(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = get_object_or_404(workflow_stats(), slug=slug)
    versions = list(
        WorkflowVersion.objects.filter(workflow=workflow)
        .select_related("created_by")
        .order_by("-number")
    )
    published = workflow.published_version
    definition = published.definition if published else (versions[0].definition if versions else {})
    by_number = {v.number: v for v in versions}
    diff = None
    diff_a = diff_b = None
    if len(versions) >= 2:
        try:
            diff_b = int(request.GET.get("b", versions[0].number))
            diff_a = int(request.GET.get("a", versions[1].number))
        except ValueError:
            diff_a, diff_b = versions[1].number, versions[0].number
        if diff_a in by_number and diff_b in by_number:
            diff = diff_lines(by_number[diff_a], by_number[diff_b])
    recent = list(workflow.executions.select_related("workflow").order_by("-created_at")[:15])
    trigger_rows = workflow_triggers(request, workflow)
    context = {
        "workflow": workflow,
        "versions": versions,
        "published": published,
        "success_rate": success_rate(workflow),
        "definition_text": definition_text(published or (versions[0] if versions else None)),
        "inputs": input_fields(definition),
        "triggers": definition.get("triggers", []),
        "recent": recent,
        "diff": diff,
        "diff_a": diff_a,
        "diff_b": diff_b,
        "tab": request.GET.get("tab", "overview"),
        "trigger_rows": trigger_rows,
        "boot": {
            "slug": workflow.slug,
            "definition": definition,
            "isAdmin": may(request.user, Action.ADMIN),
        },
    }
    return render(request, "executions/workflow_detail.html", context)


EXAMPLE_DEFINITION = """slug: my-workflow
name: My workflow
inputs:
  target: {type: string, default: world}
nodes:
  - id: hello
    action: shell
    with:
      command: echo "hello {{ inputs.target | shell_quote }}"
    on: {success: done}
  - id: done
    action: shell
    with: {command: echo done}
"""


@require_action(Action.OPERATE)
@require_GET
def workflow_editor(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    workflow = None
    text = EXAMPLE_DEFINITION
    if slug is not None:
        workflow = get_object_or_404(
            Workflow.objects.select_related("published_version"), slug=slug
        )
        latest = WorkflowVersion.objects.filter(workflow=workflow).order_by("-number").first()
        text = definition_text(latest)
    context = {
        "workflow": workflow,
        "boot": {"slug": workflow.slug if workflow else None, "text": text},
    }
    return render(request, "workflows/editor.html", context)


# ------------------------------------------------------------------------- analytics, settings


ANALYTICS_FILTER_KEYS = ("since", "until", "workflow")


@require_action(Action.READ)
@require_GET
def analytics(request: HttpRequest) -> HttpResponse:
    """The analytics page; its script loads the figures from the analytics API for the window
    in the query string (dates, `until` inclusive) and draws the charts."""
    context = {
        "filters": {key: request.GET.get(key, "") for key in ANALYTICS_FILTER_KEYS},
        "workflows": list(Workflow.objects.order_by("slug").values_list("slug", flat=True)[:500]),
    }
    return render(request, "analytics.html", context)


@require_action(Action.READ)
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    from agents.models import Agent, AgentPool

    context = {
        "saved_views": SavedView.objects.filter(user=request.user),
        "agents": Agent.objects.count(),
        "pools": AgentPool.objects.count(),
    }
    return render(request, "settings.html", context)


# --------------------------------------------------------------------- run diff, failure diagnosis


@require_action(Action.READ)
@require_GET
def execution_diff(request: HttpRequest, execution_id: str) -> HttpResponse:
    """Two runs side by side (`?against=` another id or `last_success`)."""
    from rest_framework.exceptions import ValidationError

    from executions.diff_api import executions_with_version, resolve_against
    from executions.run_diff import compare

    execution = get_object_or_404(executions_with_version(), pk=parse_uuid_or_404(execution_id))
    try:
        other = resolve_against(execution, request.GET.get("against"))
    except ValidationError as error:
        context = {"execution": execution, "problem": error.detail["against"][0]}
        return render(request, "executions/diff.html", context, status=400)
    context = {"execution": execution, "diff": compare(other, execution)}
    return render(request, "executions/diff.html", context)


@require_action(Action.READ)
def execution_diagnosis(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The rule-based diagnosis of a failed run; POST asks the configured LLM as well."""
    from executions import llm_analysis
    from executions.analytics_api import diagnosis_with_llm
    from executions.diagnosis import DIAGNOSABLE

    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    if request.method == "POST" and not may(request.user, Action.OPERATE):
        return HttpResponse("Asking the LLM needs the operator role.", status=403)
    execution = get_object_or_404(
        Execution.objects.select_related("workflow", "version"), pk=parse_uuid_or_404(execution_id)
    )
    if execution.status not in DIAGNOSABLE:
        context = {"execution": execution, "problem": f"The execution is {execution.status}."}
        return render(request, "executions/diagnosis.html", context, status=409)
    ask = request.method == "POST" and llm_analysis.enabled()
    context = {
        "execution": execution,
        "diagnosis": diagnosis_with_llm(execution, request.user, ask),
    }
    return render(request, "executions/diagnosis.html", context)
