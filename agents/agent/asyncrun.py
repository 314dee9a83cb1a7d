"""Run an asyncio-based action (http, notify, ssh) inside a worker thread, killably.

Those actions have no process group to signal, so a kill from the control plane cancels the
coroutine instead: the cancellation interrupts a pending connect, read or remote command at
once, which a blocking client could not offer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from agents.agent.actions import KILLED, ActionResult, JobContext


def run_cancellable(ctx: JobContext, main: Callable[[], Awaitable[ActionResult]]) -> ActionResult:
    """Run ``main()`` on a fresh event loop; a job kill cancels it and yields a failure."""

    async def runner() -> ActionResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            # RuntimeError: the loop already finished, so there is nothing left to cancel.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

        unregister = ctx.on_cancel(cancel)
        try:
            return await main()
        except asyncio.CancelledError:
            if not ctx.cancelled.is_set():
                raise
            return ActionResult.failure(KILLED)
        finally:
            unregister()

    return asyncio.run(runner())
