"""Triggers: materialise them from the published version, receive webhooks, fire cron ticks and
match incoming events. Every path ends in `executions.advancing.start_execution` with a trigger
record (`{"kind": "webhook" | "cron" | "event", ...}`) that the execution keeps.

Webhook signatures: `X-Switchyard-Signature: sha256=<hex>` is HMAC-SHA256 with the trigger's
secret over the raw request body, or, when `X-Switchyard-Timestamp: <unix seconds>` is sent,
over `f"{timestamp}.".encode() + body` (the timestamp must then be within the replay window).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from executions.advancing import ExecutionConflict, start_execution
from executions.models import Execution
from orchestrator.engine import DefinitionError, TemplateError, evaluate_expression, render_value
from orchestrator.engine.definition import trigger_secret_name
from orchestrator.models import Workflow
from orchestrator.secret_store import mask, masked_forms, reveal
from orchestrator.trigger_models import (
    CronFire,
    DeliveryOutcome,
    Event,
    SignatureVerdict,
    Trigger,
    TriggerKind,
    WebhookDelivery,
    new_webhook_key,
)

log = logging.getLogger(__name__)

MATERIALISED_KINDS = frozenset(TriggerKind.values)
SIGNATURE_HEADERS = ("X-Switchyard-Signature", "X-Hub-Signature-256")
TIMESTAMP_HEADER = "X-Switchyard-Timestamp"
IDEMPOTENCY_HEADERS = (
    "Idempotency-Key",
    "X-Idempotency-Key",
    "X-GitHub-Delivery",
    "X-Gitlab-Event-UUID",
    "X-Request-Id",
)
REQUEST_ID_HEADERS = ("X-Request-Id", "X-Correlation-Id", "X-GitHub-Delivery")
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
SENSITIVE_HEADER_WORDS = (
    "signature",
    "secret",
    "token",
    "password",
    "passwd",
    "auth",
    "credential",
    "cookie",
    "api-key",
    "apikey",
    "session",
)
KEPT_HEADERS = frozenset({"idempotency-key", "x-idempotency-key"})
REDACTED = "[redacted]"
MAX_HEADER_VALUE = 2000
# A cron tick seen later than this (the control worker or beat was down) is a misfire.
CRON_MISFIRE_GRACE = timedelta(seconds=60)
DEFAULT_MISFIRE = "skip"
TRUTHY_STRINGS_FALSE = frozenset({"", "false", "0", "no", "off", "none", "null"})


# -- sync from the published version ---------------------------------------------------------


def published_trigger_entries(workflow: Workflow) -> dict[tuple[int, str], dict]:
    """`(position, kind) -> entry` for the webhook/cron/event triggers of the published version."""
    version = workflow.published_version
    if version is None:
        return {}
    entries = version.definition.get("triggers") or []
    return {
        (position, entry["type"]): entry
        for position, entry in enumerate(entries)
        if isinstance(entry, dict) and entry.get("type") in MATERIALISED_KINDS
    }


def cron_schedule_changed(old: Mapping, new: Mapping) -> bool:
    return any(old.get(key) != new.get(key) for key in ("cron", "timezone"))


@transaction.atomic
def sync_triggers(workflow: Workflow) -> list[Trigger]:
    """Make the workflow's Trigger rows match its published version's `triggers:` list.

    Rows match entries by (position, kind), so republishing keeps webhook keys stable; rows with
    no entry any more are deactivated (their deliveries stay). A cron trigger that is new,
    reactivated or rescheduled starts counting ticks from now (no backlog to fire)."""
    wanted = published_trigger_entries(workflow)
    existing = {
        (row.position, row.kind): row
        for row in Trigger.objects.select_for_update().filter(workflow=workflow)
    }
    now = timezone.now()
    rows = []
    for (position, kind), entry in wanted.items():
        row = existing.get((position, kind))
        if row is None:
            row = Trigger.objects.create(
                workflow=workflow,
                position=position,
                kind=kind,
                config=entry,
                key=new_webhook_key() if kind == TriggerKind.WEBHOOK else None,
                cron_cursor=now if kind == TriggerKind.CRON else None,
            )
        else:
            if kind == TriggerKind.CRON and (
                not row.is_active or cron_schedule_changed(row.config, entry)
            ):
                row.cron_cursor = now
            if kind == TriggerKind.WEBHOOK and not row.key:
                row.key = new_webhook_key()
            row.config = entry
            row.is_active = True
            row.save()
        rows.append(row)
    for key, row in existing.items():
        if key not in wanted and row.is_active:
            row.is_active = False
            row.save(update_fields=["is_active", "updated_at"])
    return rows


def regenerate_key(trigger: Trigger) -> Trigger:
    """Give a webhook trigger a new key; the old URL stops working at once."""
    if trigger.kind != TriggerKind.WEBHOOK:
        raise ValueError("only webhook triggers have a key")
    trigger.key = new_webhook_key()
    trigger.key_rotated_at = timezone.now()
    trigger.save(update_fields=["key", "key_rotated_at", "updated_at"])
    return trigger


def webhook_path(trigger: Trigger) -> str | None:
    return f"/hooks/{trigger.key}" if trigger.kind == TriggerKind.WEBHOOK and trigger.key else None


def webhook_url(trigger: Trigger) -> str | None:
    path = webhook_path(trigger)
    return f"{settings.SWITCHYARD_BASE_URL}{path}" if path else None


# -- shared helpers -----------------------------------------------------------------------------


class PayloadError(ValueError):
    """A request body or event payload that cannot be stored or used."""


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_problem(value: Any, path: str = "") -> str | None:
    """Why `value` cannot be stored as PostgreSQL jsonb (NUL characters, lone UTF-16
    surrogates such as `"\\ud800"`, non-finite numbers)."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or 'value'}: strings may not contain NUL (\\u0000)"
        if LONE_SURROGATE.search(value):
            return f"{path or 'value'}: strings may not contain lone surrogates (\\ud800-\\udfff)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'value'}: number out of range"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if "\x00" in str(key) or LONE_SURROGATE.search(str(key)):
                return f"{path or 'value'}: keys may not contain NUL or lone surrogates"
            problem = json_problem(item, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def check_json_value(value: Any) -> None:
    try:
        problem = json_problem(value)
    except RecursionError as error:
        raise PayloadError("JSON is nested too deeply") from error
    if problem:
        raise PayloadError(problem)


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json_body(body: bytes) -> Any:
    """The body as JSON (an empty body is `{}`); raises PayloadError with the reason."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=reject_constant, parse_float=parse_float)
    except RecursionError as error:
        raise PayloadError("body is not valid JSON: nested too deeply") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise PayloadError(f"body is not valid JSON: {error}") from error
    check_json_value(value)
    return value


def incident_id_of(data: Any) -> str:
    """`data.incident_id`, else `data.id`, as a string ('' when neither is there)."""
    if isinstance(data, Mapping):
        for key in ("incident_id", "id"):
            value = data.get(key)
            if value is not None and not isinstance(value, dict | list):
                return str(value)[:200]
    return ""


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in TRUTHY_STRINGS_FALSE
    return bool(value)


def trigger_context(info: Mapping[str, Any]) -> dict[str, Any]:
    return {"trigger": info, "event": info.get("event", {})}


def evaluate_condition(trigger: Trigger, context: Mapping[str, Any]) -> tuple[bool, str]:
    """(passed, reason) for the trigger's `if:`; a condition that cannot render is false."""
    condition = trigger.config.get("if")
    if condition is None:
        return True, ""
    try:
        value = evaluate_expression(condition, context)
    except TemplateError as error:
        return False, f"if: {error}"
    if truthy(value):
        return True, ""
    return False, f"if: {condition!s} is {value!r}"


def trigger_inputs(trigger: Trigger, context: Mapping[str, Any]) -> dict[str, Any]:
    """The trigger's `inputs:` mapping rendered over the trigger context (TemplateError)."""
    inputs = trigger.config.get("inputs") or {}
    return render_value(inputs, context, "inputs") if inputs else {}


def execution_summary(execution: Execution | None) -> dict[str, Any] | None:
    if execution is None:
        return None
    return {
        "id": str(execution.pk),
        "workflow": execution.workflow.slug,
        "status": execution.status,
        "url": f"{settings.SWITCHYARD_BASE_URL}/executions/{execution.pk}/",
    }


def issues_text(error: DefinitionError) -> str:
    return "; ".join(str(issue) for issue in error.issues)


# -- webhooks -----------------------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def first_header(headers: Mapping[str, str], names: Iterable[str]) -> str:
    for name in names:
        value = header(headers, name).strip()
        if value:
            return value[:200]
    return ""


def redact_headers(headers: Mapping[str, str], secret_forms: list[str]) -> dict[str, str]:
    """Headers fit to store: no Authorization or cookies, signature and other credential-like
    values replaced by `[redacted]`, any form of the trigger's secrets masked."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in DROPPED_HEADERS:
            continue
        if lowered not in KEPT_HEADERS and any(word in lowered for word in SENSITIVE_HEADER_WORDS):
            kept[name] = REDACTED
            continue
        kept[name] = mask(str(value)[:MAX_HEADER_VALUE], secret_forms)
    return kept


@dataclass
class WebhookSecrets:
    names: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return bool(self.names)


def webhook_secrets(trigger: Trigger) -> WebhookSecrets:
    """The current secret and, during rotation, the previous one (values from the store)."""
    names = [
        name
        for name in (
            trigger_secret_name(trigger.config.get("secret")),
            trigger_secret_name(trigger.config.get("secret_previous")),
        )
        if name
    ]
    if not names:
        return WebhookSecrets()
    revealed = reveal(trigger.workflow, names)
    return WebhookSecrets(
        names=names,
        values=[revealed[name] for name in names if name in revealed],
        missing=[name for name in names if name not in revealed],
    )


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The `X-Switchyard-Signature` value for `body` (and `timestamp`, when sent)."""
    message = f"{timestamp}.".encode() + body if timestamp else body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secrets_: WebhookSecrets, body: bytes, headers: Mapping[str, str], now: float
) -> tuple[str, str]:
    """(verdict, reason). Timestamps outside the replay window are refused whether or not the
    trigger has a secret; with a secret, one of the (at most two) secrets must match."""
    timestamp = header(headers, TIMESTAMP_HEADER).strip() or None
    if timestamp is not None:
        try:
            sent = int(timestamp)
        except ValueError:
            return SignatureVerdict.STALE, f"{TIMESTAMP_HEADER} must be unix seconds"
        window = settings.SWITCHYARD_WEBHOOK_REPLAY_WINDOW
        if abs(now - sent) > window:
            return (
                SignatureVerdict.STALE,
                f"{TIMESTAMP_HEADER} is {int(now - sent)} s away from the server's clock; "
                f"deliveries older or newer than {window:g} s are refused (replay protection)",
            )
    if not secrets_.required:
        return SignatureVerdict.NOT_REQUIRED, ""
    sent_signature = first_header(headers, SIGNATURE_HEADERS)
    if not sent_signature:
        return (
            SignatureVerdict.MISSING,
            "this webhook requires an X-Switchyard-Signature: sha256=<hex HMAC-SHA256 of the body> "
            "header",
        )
    matched = False
    for secret in secrets_.values:
        expected = sign(secret, body, timestamp)
        # Constant-time compare; every secret is checked so timing does not reveal which one.
        matched |= hmac.compare_digest(expected.encode(), sent_signature.strip().lower().encode())
    if matched:
        return SignatureVerdict.VALID, ""
    return SignatureVerdict.INVALID, "signature does not match"


@dataclass
class WebhookPayload:
    data: Any
    format: str = "json"
    event: dict[str, Any] | None = None
    incident_id: str = ""


def interpret_payload(body: Any) -> WebhookPayload:
    """`variables` (or the whole body) becomes trigger data; Alertmanager and PagerDuty payloads
    are recognised. Alertmanager: one run per notification, the payload as `trigger.data`
    (so `trigger.data.alerts[i].labels.x`). PagerDuty: `event.data` is `trigger.data`."""
    if isinstance(body, dict) and isinstance(body.get("variables"), dict):
        return WebhookPayload(body["variables"], incident_id=incident_id_of(body["variables"]))
    if (
        isinstance(body, dict)
        and str(body.get("version")) == "4"
        and isinstance(body.get("alerts"), list)
    ):
        status = str(body.get("status") or "firing")
        return WebhookPayload(
            body,
            format="alertmanager",
            event={"type": f"alertmanager.{status}", "source": "alertmanager", "data": body},
            incident_id=str(body.get("groupKey") or "")[:200],
        )
    event = body.get("event") if isinstance(body, dict) else None
    if (
        isinstance(event, dict)
        and isinstance(event.get("event_type"), str)
        and isinstance(event.get("data"), dict)
    ):
        data = event["data"]
        return WebhookPayload(
            data,
            format="pagerduty",
            event={
                "id": event.get("id"),
                "type": event["event_type"],
                "source": "pagerduty",
                "occurred_at": event.get("occurred_at"),
                "data": data,
            },
            incident_id=incident_id_of(data),
        )
    return WebhookPayload(body, incident_id=incident_id_of(body))


@dataclass
class WebhookResult:
    status: int
    delivery: WebhookDelivery
    detail: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        delivery = self.delivery
        if self.status >= 400:
            return {
                "detail": self.detail,
                "errors": self.errors,
                "delivery_id": str(delivery.pk),
            }
        return {
            "delivery_id": str(delivery.pk),
            "outcome": delivery.outcome,
            "detail": self.detail,
            "execution": execution_summary(delivery.execution),
        }


class WebhookReceiver:
    """Handles one delivery (or an operator's redelivery) for one trigger."""

    def __init__(self, trigger: Trigger, delivery: WebhookDelivery, secrets_: WebhookSecrets):
        self.trigger = trigger
        self.workflow = trigger.workflow
        self.delivery = delivery
        self.secrets = secrets_

    def finish(
        self,
        status: int,
        outcome: str,
        reason: str = "",
        errors: list[dict[str, str]] | None = None,
    ) -> WebhookResult:
        delivery = self.delivery
        delivery.status_code = status
        delivery.outcome = outcome
        delivery.reason = reason
        delivery.dedup_key = delivery.dedup_key if outcome == DeliveryOutcome.STARTED else None
        delivery._state.adding = True
        delivery.save(force_insert=True)
        return WebhookResult(status, delivery, reason, errors or [])

    def refuse(self, status: int, reason: str, errors=None) -> WebhookResult:
        return self.finish(status, DeliveryOutcome.REFUSED, reason, errors)

    def state_problem(self) -> tuple[int, str] | None:
        workflow = self.workflow
        if not workflow.is_active:
            return (
                409,
                f"workflow '{workflow.slug}' is deactivated: its webhook and cron triggers are "
                "disabled until it is activated again",
            )
        if not self.trigger.is_active:
            return (
                409,
                f"this webhook trigger is no longer in the published version of '{workflow.slug}'",
            )
        if workflow.published_version_id is None:
            return 409, f"workflow '{workflow.slug}' has no published version"
        if self.secrets.missing:
            return (
                503,
                "the webhook's secret is not configured on the server (secret "
                f"{', '.join(repr(n) for n in self.secrets.missing)} is not defined)",
            )
        return None

    def duplicate(self, original: WebhookDelivery) -> WebhookResult:
        self.delivery.duplicate_of = original
        self.delivery.execution = original.execution
        return self.finish(
            200,
            DeliveryOutcome.DUPLICATE,
            f"duplicate of delivery {original.pk} (same idempotency key); no new run",
        )

    def existing_for(self, key: str) -> WebhookDelivery | None:
        return (
            WebhookDelivery.objects.filter(trigger=self.trigger, dedup_key=key)
            .select_related("execution__workflow")
            .first()
        )

    def start(self, body: bytes, extra_info: Mapping[str, Any] | None = None) -> WebhookResult:
        """Parse, interpret, filter and start (after the signature and state were checked)."""
        delivery = self.delivery
        try:
            parsed = parse_json_body(body)
        except PayloadError as error:
            return self.refuse(400, str(error))
        payload = interpret_payload(parsed)
        delivery.payload_format = payload.format
        info: dict[str, Any] = {
            "kind": "webhook",
            "webhook": self.trigger.key,
            "trigger_id": self.trigger.pk,
            "request_id": delivery.request_id or str(delivery.pk),
            "delivery_id": str(delivery.pk),
            "format": payload.format,
            "data": payload.data,
        }
        if delivery.idempotency_key:
            info["idempotency_key"] = delivery.idempotency_key
        if payload.event is not None:
            info["event"] = payload.event
            info["event_type"] = payload.event["type"]
        if payload.incident_id:
            info["incident_id"] = payload.incident_id
        info.update(extra_info or {})
        context = trigger_context(info)
        passed, reason = evaluate_condition(self.trigger, context)
        if not passed:
            return self.finish(200, DeliveryOutcome.FILTERED, f"no run: {reason}")
        try:
            inputs = trigger_inputs(self.trigger, context)
        except TemplateError as error:
            return self.refuse(
                400,
                f"trigger inputs could not be rendered: {error}",
                [{"path": error.path, "message": error.message}],
            )
        try:
            with transaction.atomic():
                delivery.outcome = DeliveryOutcome.STARTED
                delivery.status_code = 201
                delivery._state.adding = True
                delivery.save(force_insert=True)
                execution = start_execution(self.workflow, inputs=inputs, trigger=info)
                delivery.execution = execution
                delivery.save(update_fields=["execution"])
        except IntegrityError:
            original = self.existing_for(delivery.dedup_key) if delivery.dedup_key else None
            if original is None:
                raise
            delivery.execution = None
            return self.duplicate(original)
        except DefinitionError as error:
            delivery.execution = None
            return self.refuse(
                400,
                f"the run was refused: {issues_text(error)}",
                [{"path": issue.path, "message": issue.message} for issue in error.issues],
            )
        except ExecutionConflict as error:
            delivery.execution = None
            return self.refuse(409, str(error))
        return WebhookResult(201, delivery, "execution started")


def new_delivery(trigger: Trigger, sent: Mapping[str, str], **fields) -> WebhookDelivery:
    return WebhookDelivery(
        trigger=trigger,
        request_id=first_header(sent, REQUEST_ID_HEADERS),
        idempotency_key=first_header(sent, IDEMPOTENCY_HEADERS),
        content_type=header(sent, "Content-Type")[:200],
        **fields,
    )


def receive_webhook(
    trigger: Trigger,
    *,
    body: bytes | None,
    body_size: int,
    headers: Mapping[str, str],
    remote_addr: str = "",
    now: float | None = None,
) -> WebhookResult:
    """Handle `POST /hooks/{key}`. `body` is None when it exceeded the size limit. The order
    is: size (413), state (409/503), signature and replay window (401), idempotency by delivery
    id, or by signature for a timestamped one without (200 with the first execution), JSON
    (400), the trigger's `if:` (200, no run), start (201)."""
    now = time.time() if now is None else now
    secrets_ = webhook_secrets(trigger)
    forms = masked_forms(secrets_.values)
    delivery = new_delivery(
        trigger,
        headers,
        headers=redact_headers(headers, forms),
        body_size=body_size,
        remote_addr=remote_addr[:100],
    )
    receiver = WebhookReceiver(trigger, delivery, secrets_)
    limit = settings.SWITCHYARD_WEBHOOK_MAX_BODY_BYTES
    if body is None:
        return receiver.refuse(
            413, f"request body is larger than the {limit}-byte limit for webhooks"
        )
    delivery.body = mask(body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"), forms)
    problem = receiver.state_problem()
    if problem:
        return receiver.refuse(*problem)
    verdict, reason = verify_signature(secrets_, body, headers, now)
    delivery.signature = verdict
    if verdict not in (SignatureVerdict.VALID, SignatureVerdict.NOT_REQUIRED):
        return receiver.refuse(401, reason)
    key = delivery.idempotency_key or replay_key(verdict, headers)
    if key:
        original = receiver.existing_for(key)
        if original is not None:
            return receiver.duplicate(original)
        delivery.dedup_key = key
    return receiver.start(body)


def replay_key(verdict: str, headers: Mapping[str, str]) -> str:
    """The de-duplication key of a signed, timestamped delivery that carries no delivery id:
    its signature. A byte-identical copy (same timestamp, body and signature) sent again inside
    the replay window is a replay, and gets the first delivery's answer instead of another run.
    Without a timestamp the same body may legitimately come again later, so nothing is derived.
    """
    if verdict != SignatureVerdict.VALID or not header(headers, TIMESTAMP_HEADER).strip():
        return ""
    return "signature:" + first_header(headers, SIGNATURE_HEADERS).strip().lower()


class RedeliveryRefused(Exception):
    """The stored delivery cannot be replayed (HTTP 409)."""


def redeliver(original: WebhookDelivery, user=None) -> WebhookResult:
    """Replay a stored delivery as a new delivery that starts a new run (no de-duplication).
    Only deliveries that were authentic (valid signature, or none required) with a stored body
    can be replayed."""
    if original.signature not in (
        SignatureVerdict.VALID,
        SignatureVerdict.NOT_REQUIRED,
        SignatureVerdict.REDELIVERY,
    ):
        raise RedeliveryRefused(
            f"delivery {original.pk} was not authenticated (signature: {original.signature}); "
            "it cannot be redelivered"
        )
    trigger = Trigger.objects.select_related("workflow__published_version").get(
        pk=original.trigger_id
    )
    secrets_ = webhook_secrets(trigger)
    delivery = WebhookDelivery(
        trigger=trigger,
        request_id=original.request_id,
        idempotency_key=original.idempotency_key,
        headers=original.headers,
        body=original.body,
        body_size=original.body_size,
        content_type=original.content_type,
        remote_addr="",
        signature=SignatureVerdict.REDELIVERY,
        redelivery_of=original,
        redelivered_by=user if getattr(user, "is_authenticated", False) else None,
    )
    receiver = WebhookReceiver(trigger, delivery, secrets_)
    problem = receiver.state_problem()
    if problem and problem[0] != 503:
        return receiver.refuse(*problem)
    extra = {"redelivery_of": str(original.pk)}
    if delivery.redelivered_by is not None:
        extra["user"] = delivery.redelivered_by.username
    return receiver.start(original.body.encode(), extra)


# -- cron -----------------------------------------------------------------------------------------


def cron_zone(trigger: Trigger) -> ZoneInfo:
    return ZoneInfo(trigger.config.get("timezone") or "UTC")


def next_fire_times(
    trigger: Trigger, now: datetime | None = None, count: int = 5
) -> list[datetime]:
    """The next `count` ticks after `now`, in the trigger's timezone."""
    now = now or timezone.now()
    try:
        iterator = croniter(trigger.config["cron"], now.astimezone(cron_zone(trigger)))
        return [iterator.get_next(datetime) for _ in range(count)]
    except (CroniterError, KeyError, ValueError):  # a schedule that never fires
        return []


def latest_tick(trigger: Trigger, now: datetime) -> datetime:
    """The last tick at or before `now`."""
    local = now.astimezone(cron_zone(trigger))
    return croniter(trigger.config["cron"], local + timedelta(microseconds=1)).get_prev(datetime)


def advance_cursor(trigger: Trigger, now: datetime) -> None:
    Trigger.objects.filter(pk=trigger.pk).filter(
        Q(cron_cursor__isnull=True) | Q(cron_cursor__lt=now)
    ).update(cron_cursor=now)


@dataclass
class CronOutcome:
    fired: int = 0
    skipped: int = 0
    failed: int = 0
    lost_race: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def fire_cron_trigger(trigger: Trigger, now: datetime, outcome: CronOutcome) -> CronFire | None:
    """Fire the trigger's latest due tick at most once across every caller.

    Ticks after the cursor and at or before `now` are due; only the latest one can fire. A tick
    seen within CRON_MISFIRE_GRACE fires. An older one (the scheduler was down) fires once with
    `misfire: run_once` and is skipped with `misfire: skip` (the default). The CronFire row,
    unique on (trigger, scheduled_at), and the execution are created in one transaction, so a
    concurrent caller's insert waits for it and then loses; each tick fires exactly once."""
    base = trigger.cron_cursor or trigger.created_at
    tick = latest_tick(trigger, now)
    if tick <= base:
        return None
    late = now - tick > CRON_MISFIRE_GRACE
    if late and trigger.config.get("misfire", DEFAULT_MISFIRE) != "run_once":
        log.info("cron trigger %s: skipping missed tick %s", trigger.pk, tick.isoformat())
        advance_cursor(trigger, now)
        outcome.skipped += 1
        return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                fire = CronFire.objects.create(trigger=trigger, scheduled_at=tick, late=late)
        except IntegrityError:
            outcome.lost_race += 1
            return None
        info = {
            "kind": "cron",
            "trigger_id": trigger.pk,
            "schedule": trigger.config["cron"],
            "timezone": trigger.config.get("timezone") or "UTC",
            "scheduled_at": tick.isoformat(),
            "fired_at": now.isoformat(),
            "late": late,
        }
        try:
            with transaction.atomic():
                inputs = trigger_inputs(trigger, trigger_context(info))
                fire.execution = start_execution(trigger.workflow, inputs=inputs, trigger=info)
            outcome.fired += 1
        except (DefinitionError, ExecutionConflict, TemplateError) as error:
            fire.error = issues_text(error) if isinstance(error, DefinitionError) else str(error)
            outcome.failed += 1
            log.warning("cron trigger %s could not start a run: %s", trigger.pk, fire.error)
        fire.save(update_fields=["execution", "error"])
        advance_cursor(trigger, now)
    return fire


def fire_cron_triggers(now: datetime | None = None) -> dict[str, int]:
    """Fire every due cron trigger of active, published workflows (run by beat every few s)."""
    now = now or timezone.now()
    outcome = CronOutcome()
    cron = Trigger.objects.filter(kind=TriggerKind.CRON, is_active=True)
    # Ticks while a workflow is deactivated (or unpublished) are consumed, not fired later.
    cron.filter(Q(workflow__is_active=False) | Q(workflow__published_version__isnull=True)).filter(
        Q(cron_cursor__isnull=True) | Q(cron_cursor__lt=now)
    ).update(cron_cursor=now)
    due = cron.filter(workflow__is_active=True, workflow__published_version__isnull=False)
    for trigger in due.select_related("workflow__published_version"):
        try:
            fire_cron_trigger(trigger, now, outcome)
        except Exception:
            outcome.failed += 1
            log.exception("cron trigger %s failed", trigger.pk)
    return outcome.as_dict()


# -- events -----------------------------------------------------------------------------------


def event_context(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.pk),
        "type": event.type,
        "source": event.source,
        "dedup_key": event.dedup_key,
        "incident_id": event.incident_id,
        "received_at": event.received_at.isoformat() if event.received_at else None,
        "data": event.data,
    }


def matching_event_triggers(event_type: str, source: str) -> list[Trigger]:
    triggers = (
        Trigger.objects.filter(
            kind=TriggerKind.EVENT,
            is_active=True,
            workflow__is_active=True,
            workflow__published_version__isnull=False,
        )
        .select_related("workflow__published_version")
        .order_by("workflow__slug", "position")
    )
    return [
        trigger
        for trigger in triggers
        if fnmatchcase(event_type, str(trigger.config.get("event", "")))
        and fnmatchcase(source, str(trigger.config.get("source") or "*"))
    ]


def start_for_event(event: Event, trigger: Trigger) -> dict[str, Any]:
    payload = event_context(event)
    match: dict[str, Any] = {
        "trigger": trigger.pk,
        "workflow": trigger.workflow.slug,
        "started": False,
        "reason": "",
        "execution": None,
    }
    passed, reason = evaluate_condition(trigger, {"event": payload})
    if not passed:
        match["reason"] = reason
        return match
    info = {
        "kind": "event",
        "trigger_id": trigger.pk,
        "event": payload,
        "event_type": event.type,
        "event_id": str(event.pk),
        "source": event.source,
        "incident_id": event.incident_id,
        "data": event.data,
    }
    try:
        with transaction.atomic():
            inputs = trigger_inputs(trigger, trigger_context(info))
            execution = start_execution(trigger.workflow, inputs=inputs, trigger=info)
    except (DefinitionError, ExecutionConflict, TemplateError) as error:
        match["reason"] = issues_text(error) if isinstance(error, DefinitionError) else str(error)
        return match
    event.executions.add(execution)
    match.update(started=True, execution=str(execution.pk))
    return match


def ingest_event(
    *, type: str, source: str = "", dedup_key: str | None = None, data: Any = None, user=None
) -> tuple[Event, bool]:
    """Store an event and start every matching event trigger; `(event, created)`. An event with
    a dedup_key already stored is returned as is (no new runs)."""
    data = {} if data is None else data
    check_json_value(data)
    dedup_key = dedup_key or None
    if dedup_key:
        existing = Event.objects.filter(dedup_key=dedup_key).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            event = Event.objects.create(
                type=type,
                source=source,
                dedup_key=dedup_key,
                data=data,
                incident_id=incident_id_of(data),
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
            event.matches = [
                start_for_event(event, trigger) for trigger in matching_event_triggers(type, source)
            ]
            event.save(update_fields=["matches"])
    except IntegrityError:
        existing = Event.objects.filter(dedup_key=dedup_key).first() if dedup_key else None
        if existing is None:
            raise
        return existing, False
    return event, True
