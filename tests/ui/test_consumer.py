"""The live socket (`executions.consumers.LiveConsumer`) through the real ASGI application:
session authentication, origin check, per-subscription permission, group fan-out over the real
Redis channel layer."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from executions.live import execution_group
from executions.models import Execution, ExecutionEvent
from orchestrator.asgi import application
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.roles import set_roles

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-123")
    set_roles(user, add=["viewer"])
    return user


@pytest.fixture
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


@pytest.fixture
def execution() -> Execution:
    workflow = Workflow.objects.create(slug="live-test", name="Live test")
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=1,
        definition={
            "slug": "live-test",
            "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
        },
    )
    execution = Execution.objects.create(workflow=workflow, version=version, status="running")
    ExecutionEvent.objects.create(
        execution=execution, timestamp=execution.created_at, kind="execution.created", message="x"
    )
    return execution


def communicator(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/live/", headers=list(headers))


def run(scenario):
    return async_to_sync(scenario)()


def test_unauthenticated_socket_is_refused():
    async def scenario():
        ws = communicator(ORIGIN)
        connected, code = await ws.connect()
        assert not connected
        assert code == 4401
        await ws.disconnect()

    run(scenario)


def test_a_user_without_a_role_is_refused(django_user_model):
    stranger = django_user_model.objects.create_user(username="norole", password="pw-12345678")
    client = Client()
    client.force_login(stranger)
    name = settings.SESSION_COOKIE_NAME
    cookie = (b"cookie", f"{name}={client.cookies[name].value}".encode())

    async def scenario():
        ws = communicator(ORIGIN, cookie)
        connected, code = await ws.connect()
        assert not connected
        assert code == 4403
        await ws.disconnect()

    run(scenario)


def test_foreign_origin_is_refused(session_cookie):
    async def scenario():
        ws = communicator((b"origin", b"https://evil.example"), (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        assert not connected
        await ws.disconnect()

    run(scenario)


def test_subscribe_then_receive_group_messages(session_cookie, execution):
    latest = ExecutionEvent.objects.latest("id").pk
    latest_of_run = ExecutionEvent.objects.filter(execution=execution).latest("id").pk

    async def scenario():
        ws = communicator(ORIGIN, (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to({"subscribe": "executions"})
        assert await ws.receive_json_from(timeout=5) == {
            "type": "subscribed",
            "topic": "executions",
            "id": None,
            "seq": latest,
        }
        await ws.send_json_to({"subscribe": "execution", "id": str(execution.pk)})
        subscribed = await ws.receive_json_from(timeout=5)
        assert subscribed["type"] == "subscribed"
        assert subscribed["id"] == str(execution.pk)
        assert subscribed["seq"] == latest_of_run

        layer = get_channel_layer()
        row = {"id": str(execution.pk), "workflow": "live-test", "status": "completed"}
        changed = {"type": "execution.changed", "seq": 7, "execution": row}
        await layer.group_send("executions", changed)
        assert await ws.receive_json_from(timeout=5) == {
            "type": "execution.changed",
            "seq": 7,
            "execution": row,
        }
        chunk = {"seq": 1, "stream": "stdout", "data": "hello\n"}
        await layer.group_send(
            execution_group(execution.pk),
            {
                "type": "job.output",
                "execution_id": str(execution.pk),
                "job_id": "j",
                "chunks": [chunk],
            },
        )
        message = await ws.receive_json_from(timeout=5)
        assert message["type"] == "job.output" and message["chunks"] == [chunk]

        await ws.send_json_to({"unsubscribe": "executions"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "unsubscribed"
        await layer.group_send("executions", changed | {"seq": 8})
        assert await ws.receive_nothing(timeout=0.5)
        await ws.send_json_to({"ping": 1})
        assert await ws.receive_json_from(timeout=5) == {"type": "pong", "ping": 1}
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "message, error",
    [
        ({"subscribe": "everything"}, "unknown topic"),
        ({"subscribe": "execution", "id": "not-a-uuid"}, "must be an execution id"),
        ({"subscribe": "execution", "id": str(uuid.uuid4())}, "no such execution"),
        ({"subscribe": "execution"}, "must be an execution id"),
    ],
)
def test_bad_subscriptions_are_refused(session_cookie, message, error):
    async def scenario():
        ws = communicator(ORIGIN, (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to(message)
        reply = await ws.receive_json_from(timeout=5)
        assert reply["type"] == "error"
        assert error in reply["error"]
        if message.get("id"):
            # Refused means not joined: the group's messages never reach this socket.
            try:
                group = execution_group(uuid.UUID(message["id"]))
            except ValueError:
                group = None
            if group:
                await get_channel_layer().group_send(
                    group, {"type": "execution.events", "execution_id": message["id"], "events": []}
                )
                assert await ws.receive_nothing(timeout=0.5)
        await ws.send_to(text_data="not json")
        assert (await ws.receive_json_from(timeout=5))["type"] == "error"
        await ws.disconnect()

    run(scenario)


def test_an_idle_live_connection_outlives_the_layers_blocking_pops(monkeypatch):
    """The layer waits for messages with blocking pops of `brpop_timeout` seconds; a socket read
    timeout no longer than that (redis-py 8 defaults to 5 s) makes an idle receive fail and the
    live connection drop. Once two of the layer's real pops have ended empty, the receive must
    still be waiting, and a message must still arrive."""
    import asyncio

    from redis.asyncio import Redis

    empty_pops = []
    two_empty_pops = asyncio.Event()
    real_pop = Redis.bzpopmin

    async def counted_pop(self, *args, **kwargs):
        result = await real_pop(self, *args, **kwargs)
        if result is None:
            empty_pops.append(result)
            if len(empty_pops) >= 2:
                two_empty_pops.set()
        return result

    monkeypatch.setattr(Redis, "bzpopmin", counted_pop)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()

    async def idle_then_receive() -> dict:
        waiting = asyncio.ensure_future(layer.receive(channel))
        popped = asyncio.ensure_future(two_empty_pops.wait())
        await asyncio.wait(
            {waiting, popped},
            timeout=4 * layer.brpop_timeout + 10,
            return_when=asyncio.FIRST_COMPLETED,
        )
        popped.cancel()
        assert not waiting.done(), waiting.exception()
        assert len(empty_pops) >= 2, "the layer's blocking pops never ended empty"
        await layer.send(channel, {"type": "ping"})
        return await asyncio.wait_for(waiting, timeout=10)

    assert async_to_sync(idle_then_receive)()["type"] == "ping"
