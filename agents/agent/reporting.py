"""Group commit of final reports: slots that finish while a report is in flight go out together.

A slot that finishes with no report in flight sends its own at once, unless other jobs of this
agent started recently and are still running: then it lingers a few milliseconds for them (slots
started together tend to finish together; a job running for longer than `AWAIT_STARTED_WITHIN_S`
is not waited for, so a long job never delays the reports of short ones beside it). Reports
finishing while a request is in flight queue up and go out together in a later request. Under
load this turns N report requests into a few, and the server applies the reports of one request
back to back instead of N requests contending for the same execution row.

Two batches may be in flight at once when they share no execution: the server then applies
them on two workers at once, and this agent's slots run their next jobs meanwhile instead of
all waiting for one answer. Reports of an execution already in flight wait for that batch (two
batches of one execution would only queue on its row lock on the server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.agent.client import AgentClient, BatchedReport, CompleteReply

MAX_BATCH = 32
MAX_IN_FLIGHT = 2
LINGER_S = 0.010
AWAIT_STARTED_WITHIN_S = 0.1


@dataclass(eq=False)
class _Waiting:
    report: BatchedReport
    execution: str | None
    done: threading.Event = field(default_factory=threading.Event)
    reply: CompleteReply | None = None
    leads: bool = False


class ReportBatcher:
    """`submit` blocks until the report is answered; whoever sends a batch carries its own
    report in it. At most `max_in_flight` batches are in flight, no two with reports of the
    same execution (a report whose execution is unknown goes alone in flight)."""

    def __init__(
        self,
        client: AgentClient,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
        awaited: Callable[[], Collection[str]] | None = None,
        linger: float = LINGER_S,
    ):
        """`awaited` names the jobs of this agent a batch may wait for (reporting ones
        included): while some of them have not reported yet, a batch waits up to `linger`
        seconds for them."""
        self.client = client
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.awaited = awaited
        self.linger = linger
        self._lock = threading.Condition()
        self._queue: list[_Waiting] = []
        self._flights: list[list[_Waiting]] = []
        self._forming = False

    def waiting(self) -> int:
        """Reports queued, not yet in a request."""
        with self._lock:
            return len(self._queue)

    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        with self._lock:
            return len(self._flights)

    def submit(
        self,
        job_id: str,
        report: Mapping[str, Any],
        *,
        accept_next: bool,
        execution_id: str | None = None,
    ) -> CompleteReply:
        """Report one job's result (offering its slot with `accept_next`); the reply is the
        same as a single report's."""
        waiting = _Waiting(BatchedReport(job_id, report, accept_next), execution_id)
        with self._lock:
            self._queue.append(waiting)
            self._lock.notify_all()
            if self._may_lead(waiting):
                waiting.leads = self._forming = True
        if not waiting.leads:
            waiting.done.wait()
            if waiting.reply is not None:
                return waiting.reply
        return self._send_batch(waiting)

    def _busy(self, waiting: _Waiting) -> bool:
        """Whether a batch in flight holds reports of `waiting`'s execution (or of an unknown
        one, which might be the same)."""
        return any(
            waiting.execution is None or other.execution in (None, waiting.execution)
            for flight in self._flights
            for other in flight
        )

    def _may_lead(self, waiting: _Waiting) -> bool:
        return (
            not self._forming
            and len(self._flights) < self.max_in_flight
            and not self._busy(waiting)
        )

    def _send_batch(self, leader: _Waiting) -> CompleteReply:
        with self._lock:
            if self.awaited is not None and self.linger > 0:
                deadline = time.monotonic() + self.linger
                while self._still_running() > 0 and len(self._queue) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
            joining = [w for w in self._queue if w is not leader and not self._busy(w)]
            batch = [leader, *joining[: self.max_batch - 1]]
            sent = {id(w) for w in batch}
            self._queue = [w for w in self._queue if id(w) not in sent]
            self._flights.append(batch)
            self._forming = False
            self._pass_the_lead()
        replies = [CompleteReply(False)] * len(batch)
        try:
            replies = self.client.complete_many([w.report for w in batch])
        finally:
            for waiting, reply in zip(batch, replies, strict=True):
                if waiting is not leader:
                    waiting.reply = reply
                    waiting.done.set()
            with self._lock:
                self._flights = [f for f in self._flights if f is not batch]
                self._pass_the_lead()
        return replies[0]

    def _still_running(self) -> int:
        """Awaited jobs of this agent not yet reporting."""
        assert self.awaited is not None
        reporting = {w.report.job_id for w in self._queue}
        reporting.update(w.report.job_id for flight in self._flights for w in flight)
        return len(set(self.awaited()) - reporting)

    def _pass_the_lead(self) -> None:
        """The oldest queued report that may lead sends the next batch."""
        for waiting in self._queue:
            if self._may_lead(waiting):
                waiting.leads = self._forming = True
                waiting.done.set()
                return
