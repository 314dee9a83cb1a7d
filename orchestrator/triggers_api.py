"""Triggers API: a workflow's triggers (webhook URLs, next cron fires, recent deliveries),
webhook key regeneration, deliveries and redelivery, and incident/alert events."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.models import Execution
from orchestrator.api_errors import Conflict
from orchestrator.engine.definition import MISFIRE_POLICIES, trigger_secret_name
from orchestrator.models import Workflow
from orchestrator.roles import OPERATE_POST, READ_ONLY, Action, read_write
from orchestrator.schema import error_responses
from orchestrator.trigger_models import (
    CronFire,
    DeliveryOutcome,
    Event,
    SignatureVerdict,
    Trigger,
    TriggerKind,
    WebhookDelivery,
)
from orchestrator.triggers import (
    PayloadError,
    RedeliveryRefused,
    check_json_value,
    execution_summary,
    ingest_event,
    next_fire_times,
    redeliver,
    regenerate_key,
    webhook_path,
    webhook_url,
)

TAGS = ["triggers"]
EVENT_TAGS = ["events"]
RECENT = 5
SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The workflow's slug.")
TRIGGER_ID = OpenApiParameter("trigger_id", int, OpenApiParameter.PATH)
DELIVERY_ID = OpenApiParameter("delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
EVENT_ID = OpenApiParameter("event_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


# -- shapes -----------------------------------------------------------------------------------


class ExecutionRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow = serializers.CharField()
    status = serializers.ChoiceField(choices=Execution._meta.get_field("status").choices)
    url = serializers.URLField(help_text="The execution's page in the UI.")


class DeliverySerializer(serializers.Serializer):
    """One stored webhook delivery. Authorization, cookies and signature values are not kept."""

    id = serializers.UUIDField()
    trigger = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    request_id = serializers.CharField(allow_blank=True)
    idempotency_key = serializers.CharField(allow_blank=True)
    headers = serializers.DictField(child=serializers.CharField(allow_blank=True))
    body = serializers.CharField(allow_blank=True)
    body_size = serializers.IntegerField()
    content_type = serializers.CharField(allow_blank=True)
    remote_addr = serializers.CharField(allow_blank=True)
    format = serializers.CharField(
        allow_blank=True, help_text="`json`, `alertmanager` or `pagerduty` (blank if unparsed)."
    )
    signature = serializers.ChoiceField(choices=SignatureVerdict.choices)
    status_code = serializers.IntegerField(help_text="The HTTP status the sender got.")
    outcome = serializers.ChoiceField(choices=DeliveryOutcome.choices)
    reason = serializers.CharField(allow_blank=True)
    execution = ExecutionRefSerializer(allow_null=True)
    duplicate_of = serializers.UUIDField(allow_null=True)
    redelivery_of = serializers.UUIDField(allow_null=True)
    redelivered_by = serializers.CharField(allow_null=True)


class DeliverySummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    received_at = serializers.DateTimeField()
    signature = serializers.ChoiceField(choices=SignatureVerdict.choices)
    status_code = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=DeliveryOutcome.choices)
    reason = serializers.CharField(allow_blank=True)
    execution = serializers.UUIDField(allow_null=True)


class WebhookInfoSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="POST here; absolute, from SWITCHYARD_BASE_URL.")
    path = serializers.CharField()
    key = serializers.CharField()
    key_rotated_at = serializers.DateTimeField(allow_null=True)
    secret = serializers.CharField(allow_null=True, help_text="Name of the secret (no value).")
    secret_previous = serializers.CharField(
        allow_null=True, help_text="Name of the previous secret, accepted during rotation."
    )
    recent_deliveries = DeliverySummarySerializer(many=True)


class CronFireSerializer(serializers.Serializer):
    scheduled_at = serializers.DateTimeField()
    fired_at = serializers.DateTimeField()
    late = serializers.BooleanField()
    execution = serializers.UUIDField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class CronInfoSerializer(serializers.Serializer):
    cron = serializers.CharField()
    timezone = serializers.CharField()
    misfire = serializers.ChoiceField(choices=list(MISFIRE_POLICIES))
    next_fires = serializers.ListField(
        child=serializers.DateTimeField(),
        help_text="The next 5 ticks (ISO 8601 with the offset of the trigger's timezone).",
    )
    recent_fires = CronFireSerializer(many=True)


class EventTriggerInfoSerializer(serializers.Serializer):
    event = serializers.CharField(help_text="Event type pattern (glob).")
    source = serializers.CharField(allow_null=True)
    condition = serializers.CharField(allow_null=True, help_text="The trigger's `if:`.")


class TriggerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    workflow = serializers.CharField()
    kind = serializers.ChoiceField(choices=TriggerKind.choices)
    position = serializers.IntegerField(help_text="Index in the published version's `triggers`.")
    name = serializers.CharField(allow_blank=True)
    is_active = serializers.BooleanField()
    config = serializers.JSONField(help_text="The `triggers:` entry as published.")
    webhook = WebhookInfoSerializer(allow_null=True)
    cron = CronInfoSerializer(allow_null=True)
    event = EventTriggerInfoSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TriggerListResponseSerializer(serializers.Serializer):
    results = TriggerSerializer(many=True)


class IncidentEventMatchSerializer(serializers.Serializer):
    trigger = serializers.IntegerField()
    workflow = serializers.CharField()
    started = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True, help_text="Why no run was started.")
    execution = serializers.UUIDField(allow_null=True)


class IncidentEventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    source = serializers.CharField(allow_blank=True)
    dedup_key = serializers.CharField(allow_null=True)
    data = serializers.JSONField()
    incident_id = serializers.CharField(allow_blank=True)
    received_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    duplicate = serializers.BooleanField(
        help_text="True when this request's dedup_key matched an event already stored."
    )
    matches = IncidentEventMatchSerializer(many=True)
    executions = ExecutionRefSerializer(many=True)


@extend_schema_serializer(component_name="IncidentEventCreate")
class IncidentEventRequestSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=200, help_text="e.g. `incident.created`")
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    dedup_key = serializers.CharField(
        max_length=200,
        required=False,
        allow_null=True,
        allow_blank=True,
        default=None,
        help_text="Events with a key already stored start nothing and return the stored event.",
    )
    data = serializers.JSONField(required=False, default=dict)

    def validate_data(self, value: Any) -> Any:
        try:
            check_json_value(value)
        except PayloadError as error:
            raise serializers.ValidationError(str(error)) from error
        return value


# -- representations ------------------------------------------------------------------------


def delivery_summary(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "received_at": delivery.received_at,
        "signature": delivery.signature,
        "status_code": delivery.status_code,
        "outcome": delivery.outcome,
        "reason": delivery.reason,
        "execution": delivery.execution_id,
    }


def delivery_data(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "trigger": delivery.trigger_id,
        "received_at": delivery.received_at,
        "request_id": delivery.request_id,
        "idempotency_key": delivery.idempotency_key,
        "headers": delivery.headers,
        "body": delivery.body,
        "body_size": delivery.body_size,
        "content_type": delivery.content_type,
        "remote_addr": delivery.remote_addr,
        "format": delivery.payload_format,
        "signature": delivery.signature,
        "status_code": delivery.status_code,
        "outcome": delivery.outcome,
        "reason": delivery.reason,
        "execution": execution_summary(delivery.execution),
        "duplicate_of": delivery.duplicate_of_id,
        "redelivery_of": delivery.redelivery_of_id,
        "redelivered_by": delivery.redelivered_by.username if delivery.redelivered_by else None,
    }


def trigger_data(trigger: Trigger, now) -> dict[str, Any]:
    config = trigger.config
    data: dict[str, Any] = {
        "id": trigger.pk,
        "workflow": trigger.workflow.slug,
        "kind": trigger.kind,
        "position": trigger.position,
        "name": str(config.get("name") or ""),
        "is_active": trigger.is_active,
        "config": config,
        "webhook": None,
        "cron": None,
        "event": None,
        "created_at": trigger.created_at,
        "updated_at": trigger.updated_at,
    }
    if trigger.kind == TriggerKind.WEBHOOK:
        deliveries = trigger.deliveries.order_by("-received_at", "-id")[:RECENT]
        data["webhook"] = {
            "url": webhook_url(trigger),
            "path": webhook_path(trigger),
            "key": trigger.key,
            "key_rotated_at": trigger.key_rotated_at,
            "secret": trigger_secret_name(config.get("secret")),
            "secret_previous": trigger_secret_name(config.get("secret_previous")),
            "recent_deliveries": [delivery_summary(d) for d in deliveries],
        }
    elif trigger.kind == TriggerKind.CRON:
        fires = CronFire.objects.filter(trigger=trigger).order_by("-scheduled_at")[:RECENT]
        data["cron"] = {
            "cron": config["cron"],
            "timezone": config.get("timezone") or "UTC",
            "misfire": config.get("misfire") or "skip",
            "next_fires": [fire.isoformat() for fire in next_fire_times(trigger, now, RECENT)],
            "recent_fires": [
                {
                    "scheduled_at": fire.scheduled_at,
                    "fired_at": fire.fired_at,
                    "late": fire.late,
                    "execution": fire.execution_id,
                    "error": fire.error,
                }
                for fire in fires
            ],
        }
    elif trigger.kind == TriggerKind.EVENT:
        condition = config.get("if")
        data["event"] = {
            "event": config.get("event", ""),
            "source": config.get("source"),
            "condition": None if condition is None else str(condition),
        }
    return TriggerSerializer(data).data


def event_data(event: Event, duplicate: bool = False) -> dict[str, Any]:
    return IncidentEventSerializer(
        {
            "id": event.pk,
            "type": event.type,
            "source": event.source,
            "dedup_key": event.dedup_key,
            "data": event.data,
            "incident_id": event.incident_id,
            "received_at": event.received_at,
            "created_by": event.created_by.username if event.created_by else None,
            "duplicate": duplicate,
            "matches": event.matches,
            "executions": [
                execution_summary(execution)
                for execution in event.executions.select_related("workflow").order_by("created_at")
            ],
        }
    ).data


# -- lookups ----------------------------------------------------------------------------------


def get_workflow(slug: str) -> Workflow:
    return get_object_or_404(Workflow, slug=slug)


def get_trigger(slug: str, trigger_id: int) -> Trigger:
    return get_object_or_404(
        Trigger.objects.select_related("workflow__published_version"),
        pk=trigger_id,
        workflow__slug=slug,
    )


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as error:
        raise NotFound(f"No such {what}.") from error


def get_delivery(trigger: Trigger, delivery_id: str) -> WebhookDelivery:
    return get_object_or_404(
        WebhookDelivery.objects.select_related(
            "execution__workflow", "redelivered_by", "trigger__workflow"
        ),
        pk=parse_uuid(delivery_id, "delivery"),
        trigger=trigger,
    )


# -- views --------------------------------------------------------------------------------------


class TriggerListView(APIView):
    # Webhook keys start runs, so listing them needs what running needs.
    role_rules = {"GET": Action.OPERATE}

    @extend_schema(
        operation_id="workflows_triggers_list",
        summary="A workflow's triggers",
        description=(
            "Triggers materialised from the published version: webhook URLs (`/hooks/{key}`) "
            "with their recent deliveries, cron schedules with the next 5 fire times, event "
            "patterns. Triggers no longer in the published version are included only with "
            "`include_inactive=true`."
        ),
        tags=TAGS,
        parameters=[
            SLUG,
            OpenApiParameter(
                "include_inactive",
                bool,
                OpenApiParameter.QUERY,
                required=False,
                description="Also list triggers that are no longer published.",
            ),
        ],
        request=None,
        responses={
            200: TriggerListResponseSerializer,
            **error_responses(401, 404, e404="No such workflow."),
        },
    )
    def get(self, request, slug: str):
        workflow = get_workflow(slug)
        triggers = Trigger.objects.filter(workflow=workflow).select_related("workflow")
        if request.query_params.get("include_inactive", "").lower() not in ("1", "true", "yes"):
            triggers = triggers.filter(is_active=True)
        now = timezone.now()
        return Response({"results": [trigger_data(t, now) for t in triggers]})


class RegenerateKeyView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_triggers_regenerate_key",
        summary="Give a webhook trigger a new key",
        description="The old `/hooks/{key}` URL stops working at once.",
        tags=TAGS,
        parameters=[SLUG, TRIGGER_ID],
        request=None,
        responses={
            200: TriggerSerializer,
            **error_responses(
                401,
                404,
                409,
                e404="No such workflow or trigger.",
                e409="Not a webhook trigger.",
            ),
        },
    )
    def post(self, request, slug: str, trigger_id: int):
        trigger = get_trigger(slug, trigger_id)
        if trigger.kind != TriggerKind.WEBHOOK:
            raise Conflict(f"a {trigger.kind} trigger has no webhook key")
        regenerate_key(trigger)
        return Response(trigger_data(trigger, timezone.now()))


class DeliveryCursorPagination(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-received_at", "-id")


@extend_schema_view(
    get=extend_schema(
        operation_id="workflows_triggers_deliveries_list",
        summary="A webhook trigger's deliveries, newest first",
        tags=TAGS,
        parameters=[SLUG, TRIGGER_ID],
        responses={
            200: DeliverySerializer(many=True),
            **error_responses(401, 404, e404="No such workflow or trigger, or invalid cursor."),
        },
    )
)
class DeliveryListView(generics.ListAPIView):
    role_rules = READ_ONLY
    pagination_class = DeliveryCursorPagination
    serializer_class = DeliverySerializer

    def get_queryset(self):
        trigger = get_trigger(self.kwargs["slug"], self.kwargs["trigger_id"])
        return WebhookDelivery.objects.filter(trigger=trigger).select_related(
            "execution__workflow", "redelivered_by"
        )

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(
            DeliverySerializer([delivery_data(d) for d in page], many=True).data
        )


class DeliveryDetailView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="workflows_triggers_deliveries_retrieve",
        summary="One webhook delivery",
        tags=TAGS,
        parameters=[SLUG, TRIGGER_ID, DELIVERY_ID],
        request=None,
        responses={
            200: DeliverySerializer,
            **error_responses(401, 404, e404="No such workflow, trigger or delivery."),
        },
    )
    def get(self, request, slug: str, trigger_id: int, delivery_id: str):
        delivery = get_delivery(get_trigger(slug, trigger_id), delivery_id)
        return Response(DeliverySerializer(delivery_data(delivery)).data)


class RedeliverView(APIView):
    role_rules = OPERATE_POST

    @extend_schema(
        operation_id="workflows_triggers_deliveries_redeliver",
        summary="Redeliver a stored webhook delivery",
        description=(
            "Replays the stored body as a new delivery (recorded with `redelivery_of` and the "
            "user) and starts a new run, without idempotency de-duplication. Only deliveries "
            "that were authentic (valid signature, or none required) can be redelivered. "
            "Answers 201 with the new delivery when a run started, 200 when the trigger's "
            "`if:` filtered it out."
        ),
        tags=TAGS,
        parameters=[SLUG, TRIGGER_ID, DELIVERY_ID],
        request=None,
        responses={
            200: DeliverySerializer,
            201: DeliverySerializer,
            **error_responses(
                400,
                401,
                404,
                409,
                e400="The stored body is not valid JSON, or the run's inputs are invalid.",
                e404="No such workflow, trigger or delivery.",
                e409=(
                    "The delivery was not authenticated, the workflow is deactivated, or the "
                    "trigger is no longer published."
                ),
            ),
        },
    )
    def post(self, request, slug: str, trigger_id: int, delivery_id: str):
        original = get_delivery(get_trigger(slug, trigger_id), delivery_id)
        try:
            result = redeliver(original, request.user)
        except RedeliveryRefused as error:
            raise Conflict(str(error)) from error
        if result.status >= 400:
            return Response(
                {"detail": result.detail, "errors": result.errors}, status=result.status
            )
        delivery = get_delivery(result.delivery.trigger, str(result.delivery.pk))
        return Response(DeliverySerializer(delivery_data(delivery)).data, status=result.status)


class EventCursorPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-received_at", "-id")


EVENT_QUERYSET = Event.objects.select_related("created_by").prefetch_related(
    Prefetch("executions", queryset=Execution.objects.select_related("workflow"))
)


class EventListView(generics.ListAPIView):
    role_rules = read_write()
    pagination_class = EventCursorPagination
    serializer_class = IncidentEventSerializer

    @extend_schema(
        operation_id="events_list",
        summary="Events, newest first",
        tags=EVENT_TAGS,
        parameters=[
            OpenApiParameter("type", str, OpenApiParameter.QUERY, description="Event type."),
            OpenApiParameter("source", str, OpenApiParameter.QUERY, description="Event source."),
        ],
        responses={
            200: IncidentEventSerializer(many=True),
            **error_responses(401, 404, e404="Invalid cursor."),
        },
    )
    def get(self, request, *args, **kwargs):
        return self.list(request, *args, **kwargs)

    def get_queryset(self):
        queryset = EVENT_QUERYSET.all()
        for name in ("type", "source"):
            value = self.request.query_params.get(name)
            if value:
                queryset = queryset.filter(**{name: value})
        return queryset

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([event_data(event) for event in page])

    @extend_schema(
        operation_id="events_create",
        summary="Send an incident/alert event",
        description=(
            "Stores the event and starts every published, active workflow with an `event` "
            "trigger whose `event:` pattern matches `type` (and `source:` pattern, if set) and "
            "whose `if:` (rendered over `{event: {...}}`) is true. The runs' trigger records "
            "the event, its type and incident id (`data.incident_id` or `data.id`). An event "
            "whose `dedup_key` is already stored starts nothing: the stored event is returned "
            "with 200."
        ),
        tags=EVENT_TAGS,
        request=IncidentEventRequestSerializer,
        responses={
            200: IncidentEventSerializer,
            201: IncidentEventSerializer,
            **error_responses(400, 401),
        },
    )
    def post(self, request):
        serializer = IncidentEventRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        event, created = ingest_event(
            type=values["type"],
            source=values["source"],
            dedup_key=values["dedup_key"],
            data=values["data"],
            user=request.user,
        )
        event = EVENT_QUERYSET.get(pk=event.pk)
        return Response(
            event_data(event, duplicate=not created),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EventDetailView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="events_retrieve",
        summary="One event with the runs it started",
        tags=EVENT_TAGS,
        parameters=[EVENT_ID],
        request=None,
        responses={
            200: IncidentEventSerializer,
            **error_responses(401, 404, e404="No such event."),
        },
    )
    def get(self, request, event_id: str):
        event = get_object_or_404(EVENT_QUERYSET, pk=parse_uuid(event_id, "event"))
        return Response(event_data(event))
