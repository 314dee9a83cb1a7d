"""Group commit of final reports: slots that finish while a report is in flight go out together.

A slot that finishes with no report in flight sends its own at once, unless other jobs of this
agent are still running: then it lingers a few milliseconds for them (slots started together
tend to finish together). Reports finishing while a request is in flight queue up, and the first
of them sends them all in the next request when it returns. Under load this turns N report
requests into a few, and the server applies the reports of one request back to back instead of
N requests contending for the same execution row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.agent.client import AgentClient, BatchedReport, CompleteReply

MAX_BATCH = 32
LINGER_S = 0.005


@dataclass
class _Waiting:
    report: BatchedReport
    done: threading.Event = field(default_factory=threading.Event)
    reply: CompleteReply | None = None
    leads: bool = False


class ReportBatcher:
    """`submit` blocks until the report is answered; at most one batch is in flight at a time,
    and whoever sends a batch carries its own report in it."""

    def __init__(
        self,
        client: AgentClient,
        *,
        max_batch: int = MAX_BATCH,
        running: Callable[[], int] | None = None,
        linger: float = LINGER_S,
    ):
        """`running` counts this agent's jobs in flight (reporting ones included); while some
        have not reported yet, a batch waits up to `linger` seconds for them."""
        self.client = client
        self.max_batch = max_batch
        self.running = running
        self.linger = linger
        self._lock = threading.Condition()
        self._queue: list[_Waiting] = []
        self._in_flight = False

    def waiting(self) -> int:
        """Reports queued behind the request in flight."""
        with self._lock:
            return len(self._queue)

    def submit(self, job_id: str, report: Mapping[str, Any], *, accept_next: bool) -> CompleteReply:
        """Report one job's result (offering its slot with `accept_next`); the reply is the
        same as a single report's."""
        waiting = _Waiting(BatchedReport(job_id, report, accept_next))
        with self._lock:
            self._queue.append(waiting)
            waiting.leads = not self._in_flight
            self._in_flight = True
            self._lock.notify_all()
        if not waiting.leads:
            waiting.done.wait()
            if waiting.reply is not None:
                return waiting.reply
        return self._send_batch(waiting)

    def _send_batch(self, leader: _Waiting) -> CompleteReply:
        with self._lock:
            if self.running is not None and self.linger > 0:
                deadline = time.monotonic() + self.linger
                while len(self._queue) < min(self.running(), self.max_batch):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        replies = [CompleteReply(False)] * len(batch)
        try:
            replies = self.client.complete_many([w.report for w in batch])
        finally:
            for waiting, reply in zip(batch, replies, strict=True):
                if waiting is not leader:
                    waiting.reply = reply
                    waiting.done.set()
            self._pass_the_lead()
        return replies[batch.index(leader)]

    def _pass_the_lead(self) -> None:
        """The oldest queued report sends the next batch; with none queued, nothing is in
        flight any more."""
        with self._lock:
            if self._queue:
                self._queue[0].done.set()
            else:
                self._in_flight = False
