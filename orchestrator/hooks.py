"""`POST /hooks/{key}`: the webhook endpoint. No user authentication: the unguessable key (and,
when the trigger has a secret, the HMAC signature) authenticates the sender. The view reads the
raw body itself (never `request.data`), so the signature is checked over exactly the bytes sent.
See `orchestrator.triggers.receive_webhook` for what is checked and in which order."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import permissions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.schema import error_responses
from orchestrator.serializers import ErrorSerializer
from orchestrator.trigger_models import DeliveryOutcome, Trigger, TriggerKind
from orchestrator.triggers import receive_webhook

READ_CHUNK = 64 * 1024


def read_limited(request, limit: int) -> tuple[bytes | None, int]:
    """(body, size): the raw body, or None (with the size seen so far) if it exceeds `limit`.
    A Content-Length above the limit is refused without reading the body."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None, declared
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = request.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None, size
    return b"".join(chunks), size


class HookExecutionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    workflow = serializers.CharField()
    status = serializers.CharField()
    url = serializers.URLField()


class HookResultSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField(help_text="The stored delivery (see the deliveries API).")
    outcome = serializers.ChoiceField(
        choices=DeliveryOutcome.choices, help_text="`started`, `duplicate` or `filtered`."
    )
    detail = serializers.CharField(allow_blank=True)
    execution = HookExecutionSerializer(
        allow_null=True, help_text="The run started (or, for a duplicate, the first one)."
    )


@extend_schema_serializer(component_name="WebhookError")
class HookErrorSerializer(ErrorSerializer):
    delivery_id = serializers.UUIDField(required=False, help_text="The stored delivery.")


def header(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.HEADER, required=False, description=description
    )


class WebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        operation_id="hooks_deliver",
        summary="Deliver a webhook",
        description=(
            "Starts the workflow of the webhook trigger with this key. The body's `variables` "
            "object, or else the whole JSON body (an empty body is `{}`), becomes "
            "`trigger.data`; Alertmanager (`{version: '4', alerts: [...]}`, one run per "
            "notification) and PagerDuty (`{event: {event_type, data}}`, `event.data` as the "
            "data) payloads are recognised. With a secret, `X-Switchyard-Signature: "
            "sha256=<hex HMAC-SHA256 of the raw body>` is required; when "
            "`X-Switchyard-Timestamp` (unix seconds) is sent the HMAC covers "
            '`f"{timestamp}." + body` and the timestamp must be within the replay window '
            "(5 minutes by default). Every delivery is stored, whatever the outcome."
        ),
        tags=["webhooks"],
        auth=[],
        parameters=[
            OpenApiParameter("key", str, OpenApiParameter.PATH, description="The webhook key."),
            header(
                "X-Switchyard-Signature",
                "`sha256=<hex>`; required when the trigger has a "
                "secret (`X-Hub-Signature-256` is accepted too).",
            ),
            header("X-Switchyard-Timestamp", "Unix seconds; part of the signed message."),
            header(
                "Idempotency-Key",
                "Repeating a key answers 200 with the first execution (also `X-GitHub-Delivery`, "
                "`X-Gitlab-Event-UUID`, `X-Request-Id`).",
            ),
        ],
        request={"application/json": OpenApiTypes.ANY},
        responses={
            201: OpenApiResponse(HookResultSerializer, description="A run was started."),
            200: OpenApiResponse(
                HookResultSerializer,
                description="Duplicate (idempotency key seen) or filtered by the trigger's `if:`.",
            ),
            400: OpenApiResponse(HookErrorSerializer, description="Not JSON, or invalid inputs."),
            401: OpenApiResponse(
                HookErrorSerializer, description="Missing/invalid signature or stale timestamp."
            ),
            **error_responses(404, e404="No such webhook."),
            409: OpenApiResponse(
                HookErrorSerializer,
                description="The workflow is deactivated or the trigger is no longer published.",
            ),
            413: OpenApiResponse(HookErrorSerializer, description="The body is too large."),
            503: OpenApiResponse(
                HookErrorSerializer, description="The trigger's secret is not in the store."
            ),
        },
    )
    def post(self, request, key: str):
        trigger = (
            Trigger.objects.select_related("workflow__published_version")
            .filter(key=key, kind=TriggerKind.WEBHOOK)
            .first()
        )
        if trigger is None:
            return Response({"detail": "No such webhook.", "errors": []}, status=404)
        body, size = read_limited(request, settings.SWITCHYARD_WEBHOOK_MAX_BODY_BYTES)
        result = receive_webhook(
            trigger,
            body=body,
            body_size=size,
            headers=dict(request.headers),
            remote_addr=request.META.get("REMOTE_ADDR") or "",
        )
        return Response(result.body(), status=result.status)


webhook = WebhookView.as_view()
