"""The live channel layer keeps what a crowd's web process has not read yet: channels_redis
drops messages beyond its capacity (100 by default), per web process in Redis and per watcher
in the process, and a process serving 200 watchers of a busy run fell that far behind."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

BEHIND = 400


def test_watchers_of_a_process_that_falls_behind_by_hundreds_of_messages_lose_none():
    layer = get_channel_layer()
    group = f"capacity-{uuid.uuid4().hex}"

    async def read_all(channel: str) -> list[int]:
        """What the watcher gets until nothing more comes for a few seconds."""
        numbers = []
        with contextlib.suppress(TimeoutError):
            while len(numbers) < BEHIND:
                message = await asyncio.wait_for(layer.receive(channel), timeout=3)
                numbers.append(message["n"])
        return numbers

    async def fall_behind_then_read() -> dict[str, list[int]]:
        watchers = [await layer.new_channel() for _ in range(2)]
        for channel in watchers:
            await layer.group_add(group, channel)
        try:
            for number in range(BEHIND):
                await layer.group_send(group, {"type": "execution.events", "n": number})
            return {channel: await read_all(channel) for channel in watchers}
        finally:
            for channel in watchers:
                await layer.group_discard(group, channel)

    received = async_to_sync(fall_behind_then_read)()

    assert list(received.values()) == [list(range(BEHIND))] * 2
