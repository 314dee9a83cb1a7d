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
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger("switchyard.live")


def send(group: str, message: dict[str, Any]) -> None:
    """Send to a group. The message goes through JSON first: the channel layer's msgpack cannot
    encode UUIDs or datetimes, and browsers receive JSON anyway."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        message = json.loads(json.dumps(message, cls=DjangoJSONEncoder))
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("live update to %s failed; clients will catch up", group, exc_info=True)


def execution_group(execution_id) -> str:
    return f"execution.{execution_id}"


def publish_events_after_commit(execution_id, created: list) -> None:
    """After commit, push the new log events of one execution and its list row."""
    if created:
        transaction.on_commit(lambda: publish_events(execution_id, created))


def publish_events(execution_id, created: list) -> None:
    from executions.models import Execution
    from executions.serializers import EventSerializer, ExecutionSerializer, job_counts_for

    execution = (
        Execution.objects.select_related("workflow", "version")
        .defer("nodes", "inputs", "vars", "outputs")
        .filter(pk=execution_id)
        .first()
    )
    if execution is None:
        return
    events = EventSerializer(created, many=True).data
    seq = max(event.pk for event in created)
    send(
        execution_group(execution_id),
        {
            "type": "execution.events",
            "seq": seq,
            "execution_id": str(execution_id),
            "status": execution.status,
            "events": events,
        },
    )
    row = ExecutionSerializer(
        execution, context={"job_counts": job_counts_for([execution.pk])}
    ).data
    send("executions", {"type": "execution.changed", "seq": seq, "execution": row})
    if any(event["kind"].startswith("approval.") for event in events):
        send("approvals", {"type": "approvals.changed", "execution_id": str(execution_id)})


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
