"""Live updates: what the control plane pushes to Channels groups after each commit.

Every execution-log event has a global, monotonically increasing id, and that id is the live
sequence number: a client that reconnects asks the log API for events after the last id it saw.

Groups and messages (the `type` selects the consumer handler, dots becoming underscores):
- `executions`: `{"type": "execution.changed", "seq": <max event id>, "execution": <list row>}`
  (the row has the fields of `ExecutionSerializer`: id, workflow, status, trigger, timings, ...)
  and `{"type": "execution.deleted", "execution_id": ...}`
- `execution.<id>`: `{"type": "execution.events", "seq": <max event id>, "execution_id": ...,
  "status": ..., "events": [<EventSerializer rows>]}` and, for live output,
  `{"type": "job.output", "execution_id": ..., "job_id": ..., "chunks": [{seq, stream, data}]}`
- `approvals`: `{"type": "approvals.changed", "execution_id": ...}`
- `agents`: `{"type": "agents.changed", "agent": <name>}` (heartbeats after silence, running jobs
  changing, and the sweeper noticing an agent went offline)
Publishing never fails a request: the database is the truth and clients can always catch up.
Execution events leave the request path: a per-process publisher thread sends them, merging
what piled up for the same execution into one message (see `BackgroundPublisher`). For each
execution, its `execution.events` message is sent before its `execution.changed` row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, transaction

logger = logging.getLogger("switchyard.live")
_publisher_thread = threading.local()
T = TypeVar("T")


def send(group: str, message: dict[str, Any]) -> None:
    """Send to a group (see `send_all`)."""
    send_all([[(group, message)]])


def run_on_layer_loop(make_coroutine: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run a coroutine on the publisher thread's own loop (one Redis connection for the channel
    layer), or through `async_to_sync` from any other thread."""
    loop = getattr(_publisher_thread, "loop", None)
    if loop is not None:
        return loop.run_until_complete(make_coroutine(*args))
    return async_to_sync(make_coroutine)(*args)


async def watched_groups(layer, groups: list[str]) -> set[str]:
    """The groups among `groups` that have a member: one pipelined `ZCOUNT` per Redis shard.

    Most runs are never watched live; building, encoding and sending their messages (two round
    trips per group send even to an empty group) was the largest part of the publisher's work.
    A client joining after this check misses nothing: it loads the state it joined with and asks
    the log API for events after the last id it saw. Layers that are not `channels_redis` (the
    in-memory one) count every group as watched."""
    group_key = getattr(layer, "_group_key", None)
    if group_key is None or not hasattr(layer, "consistent_hash"):
        return set(groups)
    since = time.time() - layer.group_expiry
    by_shard: dict[int, list[str]] = {}
    for group in groups:
        by_shard.setdefault(layer.consistent_hash(group), []).append(group)
    watched: set[str] = set()
    for shard, names in by_shard.items():
        pipe = layer.connection(shard).pipeline(transaction=False)
        for name in names:
            pipe.zcount(group_key(name), since, "+inf")
        for name, members in zip(names, await pipe.execute(), strict=True):
            if members:
                watched.add(name)
    return watched


def send_all(sequences: list[list[tuple[str, dict[str, Any]]]]) -> None:
    """Send sequences of `(group, message)` pairs: each sequence in order (an execution's
    events before its list row), the sequences concurrently. Each message goes through JSON
    first: the channel layer's msgpack cannot encode UUIDs or datetimes, and browsers receive
    JSON anyway."""
    layer = get_channel_layer()
    if layer is None or not sequences:
        return
    try:
        encoded = [
            [
                (group, json.loads(json.dumps(message, cls=DjangoJSONEncoder)))
                for group, message in sequence
            ]
            for sequence in sequences
        ]

        async def send_in_order(sequence: list[tuple[str, dict[str, Any]]]) -> None:
            for group, body in sequence:
                await layer.group_send(group, body)

        async def send_encoded() -> None:
            await asyncio.gather(*(send_in_order(sequence) for sequence in encoded))

        run_on_layer_loop(send_encoded)
    except Exception:
        groups = sorted({group for sequence in sequences for group, _ in sequence})
        logger.warning("live update to %s failed; clients will catch up", groups, exc_info=True)


class BackgroundPublisher:
    """Sends execution events from a daemon thread with its own event loop (so the channel
    layer keeps one Redis connection), off the request and task paths. Everything queued
    meanwhile for one execution goes out as one message: fewer queries and sends in bursts."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, list]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, execution_id, created: list) -> None:
        self._ensure_running()
        self._queue.put((execution_id, created))

    def _ensure_running(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, name="switchyard-live", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        _publisher_thread.loop = loop
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            merged: dict[Any, list] = {}
            for execution_id, created in batch:
                merged.setdefault(execution_id, []).extend(created)
            try:
                publish_batch(merged)
            except Exception:
                logger.warning("live update of %d executions failed", len(merged), exc_info=True)
            close_old_connections()


background_publisher = BackgroundPublisher()


def execution_group(execution_id) -> str:
    return f"execution.{execution_id}"


def publish_events_after_commit(execution_id, created: list) -> None:
    """After commit, push the new log events of one execution and its list row."""
    if not created:
        return
    if settings.SWITCHYARD_LIVE_IN_BACKGROUND:
        transaction.on_commit(
            lambda: background_publisher.submit(execution_id, created), robust=True
        )
    else:
        transaction.on_commit(lambda: publish_events(execution_id, created), robust=True)


_serializers = threading.local()


def row_serializers(event_class, execution_class) -> tuple[Any, Any]:
    """One execution-row and one event serializer per thread, reused: DRF builds a serializer's
    fields per instance, which cost the publisher more than the rest of its work."""
    if not hasattr(_serializers, "pair"):
        _serializers.pair = (execution_class(context={}), event_class())
    return _serializers.pair


def publish_events(execution_id, created: list) -> None:
    publish_batch({execution_id: created})


def publish_batch(created_by_execution: dict[Any, list]) -> None:
    """Push the new log events of several executions and their list rows to the groups watching
    them: one Redis round trip to learn which are watched, then at most two queries and one
    round of concurrent sends for the whole batch."""
    from executions.models import Execution
    from executions.serializers import EventSerializer, ExecutionSerializer, job_counts_for

    ids = [execution_id for execution_id, created in created_by_execution.items() if created]
    if not ids:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    groups = ["executions", "approvals", *(execution_group(i) for i in ids)]
    try:
        watched = run_on_layer_loop(watched_groups, layer, groups)
    except Exception:
        logger.warning("could not tell which live groups are watched", exc_info=True)
        watched = set(groups)
    list_watched = "executions" in watched
    wanted = [
        i
        for i in ids
        if list_watched
        or execution_group(i) in watched
        or ("approvals" in watched and has_approval_event(created_by_execution[i]))
    ]
    if not wanted:
        return
    executions = Execution.objects.select_related("workflow", "version").defer(
        "nodes", "inputs", "vars", "outputs", "version__definition"
    )
    found = {execution.pk: execution for execution in executions.filter(pk__in=wanted).order_by()}
    if not found:
        return
    row_of, event_of = row_serializers(EventSerializer, ExecutionSerializer)
    if list_watched:
        row_of._context = {"job_counts": job_counts_for(list(found))}
    sequences: list[list[tuple[str, dict[str, Any]]]] = []
    for execution_id, execution in found.items():
        messages: list[tuple[str, dict[str, Any]]] = []
        sequences.append(messages)
        created = created_by_execution[execution_id]
        seq = max(event.pk for event in created)
        group = execution_group(execution_id)
        if group in watched:
            messages.append(
                (
                    group,
                    {
                        "type": "execution.events",
                        "seq": seq,
                        "execution_id": str(execution_id),
                        "status": execution.status,
                        "events": [event_of.to_representation(e) for e in created],
                    },
                )
            )
        if list_watched:
            row = row_of.to_representation(execution)
            messages.append(
                ("executions", {"type": "execution.changed", "seq": seq, "execution": row})
            )
        if "approvals" in watched and has_approval_event(created):
            messages.append(
                ("approvals", {"type": "approvals.changed", "execution_id": str(execution_id)})
            )
    send_all(sequences)


def has_approval_event(created: list) -> bool:
    return any(event.kind.startswith("approval.") for event in created)


def publish_output_after_commit(execution_id, job_id, chunks: list[dict[str, Any]]) -> None:
    if chunks:
        transaction.on_commit(
            lambda: send(
                execution_group(execution_id),
                {
                    "type": "job.output",
                    "execution_id": str(execution_id),
                    "job_id": str(job_id),
                    "chunks": chunks,
                },
            )
        )


def publish_agent_change(name: str) -> None:
    send("agents", {"type": "agents.changed", "agent": name})


def publish_deleted_after_commit(execution_id) -> None:
    transaction.on_commit(
        lambda: send("executions", {"type": "execution.deleted", "execution_id": str(execution_id)})
    )
