"""The UI's live socket: one WebSocket per page at `/ws/live/`, many subscriptions on it.

Authentication is the Django session (Channels' `AuthMiddlewareStack`); the origin is checked by
`AllowedHostsOriginValidator` in `orchestrator.asgi`. Anonymous or inactive users, and users
without a role, are refused at the handshake. Each subscription is checked on its own, then the
socket joins the matching Channels group (see `executions.live` for what is published there):

    client -> {"subscribe": "executions"}                 list rows      (group `executions`)
    client -> {"subscribe": "execution", "id": "<uuid>"}  one run        (group `execution.<id>`)
    client -> {"subscribe": "approvals"}                  pending list   (group `approvals`)
    client -> {"subscribe": "agents"}                     the fleet      (group `agents`)
    client -> {"unsubscribe": <topic>, "id": ...}         leave it again
    client -> {"ping": <anything>}                        answered with {"type": "pong", ...}

    server -> {"type": "subscribed", "topic": ..., "id": ..., "seq": <latest event id or 0>}
    server -> {"type": "error", "topic": ..., "id": ..., "error": "<why>"}   (refused; the
              socket stays open for its other subscriptions)
    server -> the group messages themselves, unchanged: `execution.changed`, `execution.events`,
              `job.output`, `approvals.changed`, `agents.changed`.

`seq` is the id of the newest execution-log event: a page that reconnects asks for the events
after the last `seq` it saw, so nothing is lost while the socket was down.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Max

from executions.live import execution_group
from orchestrator.roles import Action, may

# Close codes (4000-4999 are free for applications).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_SUBSCRIPTIONS = 64
GLOBAL_TOPICS = {"executions", "approvals", "agents"}


class SubscriptionRefused(Exception):
    pass


def user_may_view_execution(user, execution_id: uuid.UUID) -> bool:
    """Per-object check for `execution.<id>`: the run exists and the user's roles may read
    executions (the same rule as the API); the one place to narrow it for per-workflow roles."""
    from executions.models import Execution

    return may(user, Action.READ) and Execution.objects.filter(pk=execution_id).exists()


def latest_seq(execution_id: uuid.UUID | None) -> int:
    from executions.models import ExecutionEvent

    events = ExecutionEvent.objects.all()
    if execution_id is not None:
        events = events.filter(execution_id=execution_id)
    return events.aggregate(seq=Max("id"))["seq"] or 0


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.subscriptions: dict[tuple[str, str], str] = {}
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(may)(user, Action.READ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()

    async def disconnect(self, code) -> None:
        for group in set(getattr(self, "subscriptions", {}).values()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.subscriptions = {}

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "messages are JSON objects"})
            return
        if "ping" in content:
            await self.send_json({"type": "pong", "ping": content["ping"]})
            return
        if "subscribe" in content:
            await self.subscribe(content.get("subscribe"), content.get("id"))
            return
        if "unsubscribe" in content:
            await self.unsubscribe(content.get("unsubscribe"), content.get("id"))
            return
        await self.send_json({"type": "error", "error": "unknown message"})

    async def resolve(self, topic: Any, raw_id: Any) -> tuple[str, str, uuid.UUID | None]:
        """(group, id string, execution uuid) for a subscription, or SubscriptionRefused."""
        if topic in GLOBAL_TOPICS:
            return topic, "", None
        if topic != "execution":
            raise SubscriptionRefused(
                f"unknown topic; use one of {', '.join(sorted([*GLOBAL_TOPICS, 'execution']))}"
            )
        try:
            execution_id = uuid.UUID(str(raw_id))
        except ValueError as error:
            raise SubscriptionRefused("`id` must be an execution id") from error
        allowed = await database_sync_to_async(user_may_view_execution)(
            self.scope["user"], execution_id
        )
        if not allowed:
            raise SubscriptionRefused("no such execution")
        return execution_group(execution_id), str(execution_id), execution_id

    async def subscribe(self, topic: Any, raw_id: Any) -> None:
        reply = {"topic": topic, "id": raw_id}
        try:
            group, key, execution_id = await self.resolve(topic, raw_id)
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise SubscriptionRefused(f"at most {MAX_SUBSCRIPTIONS} subscriptions a socket")
        except SubscriptionRefused as error:
            await self.send_json({"type": "error", **reply, "error": str(error)})
            return
        if (topic, key) not in self.subscriptions:
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscriptions[(topic, key)] = group
        seq = 0
        if topic in ("execution", "executions"):
            seq = await database_sync_to_async(latest_seq)(execution_id)
        await self.send_json({"type": "subscribed", "topic": topic, "id": key or None, "seq": seq})

    async def unsubscribe(self, topic: Any, raw_id: Any) -> None:
        key = "" if topic in GLOBAL_TOPICS else str(raw_id)
        group = self.subscriptions.pop((topic, key), None)
        if group is not None and group not in self.subscriptions.values():
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.send_json({"type": "unsubscribed", "topic": topic, "id": key or None})

    # Group messages (`type` with dots as underscores) go to the browser unchanged.

    async def forward(self, message: dict[str, Any]) -> None:
        await self.send_json(message)

    execution_changed = forward
    execution_deleted = forward
    execution_events = forward
    job_output = forward
    approvals_changed = forward
    agents_changed = forward
