"""Live output: stream a job's stdout/stderr to ``POST /jobs/{id}/output`` while it runs.

Reader threads hand raw bytes to ``OutputStreamer.write``, which never touches the network: it
decodes (incrementally, so a multi-byte character split across reads stays whole), masks
secrets (holding back a short tail so a secret split across reads is still caught), and queues
chunks of at most 64 KiB. One flusher thread per job posts them in batches, at most every
250 ms, or at once when 64 KiB are waiting.

Memory stays bounded whatever the job prints: at most ``max_pending`` bytes wait to be sent
(older unsent chunks are dropped for a marker when the control plane is slow or down), one
request is in flight at a time, and past ``limit`` bytes nothing more is queued at all. The
final report still carries the capped tail of each stream.

``seq`` numbers are assigned when a chunk is first put in a request and a failed request is
retried with the same chunks and numbers, so ``seq`` is gapless from 1 and the server can
de-duplicate a retry whose first attempt it had applied after all.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from agents.agent.actions import KILLED
from agents.agent.client import (
    DEFAULT_OUTPUT_LIMIT,
    ApiError,
    LeaseLost,
    OutputReply,
    is_retryable_status,
)
from agents.agent.masking import StreamMasker, secret_forms

logger = logging.getLogger("switchyard.agent")

CHUNK_BYTES = 64 * 1024
BATCH_BYTES = 64 * 1024
REQUEST_BYTES = 512 * 1024
REQUEST_CHUNKS = 500  # the control plane accepts at most 1000 chunks per request
MAX_PENDING_BYTES = 4 * 1024 * 1024
FLUSH_INTERVAL_S = 0.25
FINAL_FLUSH_BUDGET_S = 10.0
RETRY_BACKOFF_CAP_S = 5.0
# What a queued chunk costs beyond its data (object, dict slot…): counted against
# ``max_pending`` so that a flood of tiny chunks cannot grow memory past the bound either.
CHUNK_OVERHEAD = 128

LEASE_LOST = "killed: the lease is stale (the control plane refused live output with 409)"

Post = Callable[[list[dict[str, object]]], OutputReply]


@dataclass
class _Chunk:
    stream: str
    data: str
    size: int  # UTF-8 bytes of data
    dropped: int = 0  # > 0: a marker standing for that many dropped bytes

    @property
    def cost(self) -> int:
        return self.size + CHUNK_OVERHEAD

    def render(self) -> str:
        if self.dropped:
            return f"[switchyard: {self.dropped} bytes of live output dropped]"
        return self.data


def _utf8_prefix(data: bytes, limit: int) -> int:
    """The largest cut ``<= limit`` that does not split a UTF-8 sequence."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


class _StreamState:
    """Decoder and masker of one stream (stdout or stderr)."""

    def __init__(self, forms: tuple[str, ...]):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.masker = StreamMasker(forms)

    def feed(self, data: bytes) -> str:
        return self.masker.feed(self.decoder.decode(data))

    def finish(self) -> str:
        return self.masker.feed(self.decoder.decode(b"", final=True)) + self.masker.finish()


class OutputStreamer:
    """Per-job live output stream; ``write`` from reader threads, ``close`` when the job ends.

    ``post`` sends one request (raising ``LeaseLost`` on 409, ``ApiError``/``httpx.HTTPError``
    on other failures); ``kill(reason)`` is called when the control plane wants the job dead.
    """

    def __init__(
        self,
        post: Post,
        kill: Callable[[str], None],
        *,
        secrets: tuple[str, ...] = (),
        limit: int = DEFAULT_OUTPUT_LIMIT,
        flush_interval: float = FLUSH_INTERVAL_S,
        max_pending: int = MAX_PENDING_BYTES,
        final_budget: float = FINAL_FLUSH_BUDGET_S,
        name: str = "job",
    ):
        self._post = post
        self._kill = kill
        self._forms = secret_forms(secrets)
        self.limit = limit
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.final_budget = final_budget
        self._lock = threading.Lock()
        self._wake = threading.Event()  # data waiting or closing
        self._stop = threading.Event()  # closing
        self._streams: dict[str, _StreamState] = {}
        self._pending: deque[_Chunk] = deque()
        self._pending_cost = 0  # data bytes plus CHUNK_OVERHEAD per queued chunk
        self._inflight: list[dict[str, object]] | None = None
        self._next_seq = 1
        self.streamed = 0  # bytes accepted into the stream (what counts against ``limit``)
        self.dropped = 0
        self.truncated = False
        self.stopped = False  # lease lost or output rejected: nothing more is sent
        self._kill_requested = False
        self._closing = False
        self._open = False
        self._thread = threading.Thread(target=self._run, name=f"switchyard-output-{name}")
        self._thread.daemon = True

    # -- producer side (reader threads) ---------------------------------------------------

    def write(self, stream: str, data: bytes) -> None:
        with self._lock:
            if self.truncated or self.stopped or self._closing:
                return
            state = self._streams.get(stream)
            if state is None:
                state = self._streams[stream] = _StreamState(self._forms)
            self._enqueue(stream, state.feed(data))

    def _enqueue(self, stream: str, text: str) -> None:
        if not text or self.truncated:
            return
        data = text.encode("utf-8")
        room = self.limit - self.streamed
        if len(data) > room:
            data = data[: _utf8_prefix(data, room)]
            self.truncated = True
        self.streamed += len(data)
        offset = 0
        while offset < len(data):
            last = self._pending[-1] if self._pending else None
            if last is not None and not last.dropped and last.stream == stream:
                space = CHUNK_BYTES - last.size
            else:
                last, space = None, CHUNK_BYTES
            cut = _utf8_prefix(data[offset:], space) if space > 0 else 0
            if cut == 0 and last is not None:
                last, cut = None, _utf8_prefix(data[offset:], CHUNK_BYTES)
            piece = data[offset : offset + cut].decode("utf-8")
            if last is None:
                self._push(_Chunk(stream, piece, cut))
            else:
                last.data += piece
                last.size += cut
                self._pending_cost += cut
            offset += cut
        if self.truncated:
            marker = f"[switchyard: output truncated after {self.limit} bytes]"
            self._push(_Chunk(stream, marker, len(marker)))
        self._drop_oldest()
        if self._pending_cost >= BATCH_BYTES or self.truncated:
            self._wake.set()

    def _push(self, chunk: _Chunk) -> None:
        self._pending.append(chunk)
        self._pending_cost += chunk.cost
        if self._open and not self._closing and self._thread.ident is None:
            self._thread.start()

    def _drop_oldest(self) -> None:
        """Keep unsent output under ``max_pending`` by dropping the oldest data for a marker."""
        while self._pending_cost > self.max_pending:
            marker = self._pending[0] if self._pending[0].dropped else None
            index = 1 if marker is not None else 0
            if index >= len(self._pending):
                return
            victim = self._pending[index]
            del self._pending[index]
            self._pending_cost -= victim.cost
            self.dropped += victim.size
            if marker is None:
                marker = _Chunk(victim.stream, "", 0)
                self._pending.appendleft(marker)
                self._pending_cost += marker.cost
            marker.dropped += victim.size

    # -- consumer side (flusher thread) ---------------------------------------------------

    def start(self) -> None:
        """Open the stream. Its flusher thread starts with the first output: most jobs of a
        busy agent print nothing, and a thread per job was a third of running one."""
        with self._lock:
            self._open = True
            if self._pending and not self._closing:
                self._thread.start()

    def close(self) -> None:
        """Flush what is left (including held-back text) and stop; returns once everything was
        sent or given up, so the final report can follow."""
        with self._lock:
            self._closing = True
            for stream, state in self._streams.items():
                if not self.truncated and not self.stopped:
                    self._enqueue(stream, state.finish())
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        elif self._thread.ident is None:
            self._final_flush()

    def _run(self) -> None:
        delays = self._backoff()
        failing = False
        while True:
            if failing:
                # Backing off: only closing may cut the wait short, not more output arriving.
                self._stop.wait(next(delays))
            else:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            if self._closing:
                break
            failing = not self._flush(drain=False)
            if not failing:
                delays = self._backoff()
        self._final_flush()

    def _final_flush(self) -> None:
        deadline = time.monotonic() + self.final_budget
        delays = self._backoff()
        while not self._flush(drain=True):
            delay = next(delays)
            if time.monotonic() + delay > deadline:
                with self._lock:
                    lost = sum(chunk.size for chunk in self._pending) + sum(
                        len(str(chunk["data"]).encode()) for chunk in self._inflight or ()
                    )
                logger.error("giving up streaming the last %d bytes of live output", lost)
                return
            time.sleep(delay)

    def _backoff(self) -> Iterator[float]:
        delay = self.flush_interval
        while True:
            yield delay
            delay = min(delay * 2, RETRY_BACKOFF_CAP_S)

    def _next_batch(self) -> list[dict[str, object]]:
        batch: list[dict[str, object]] = []
        size = 0
        while self._pending and len(batch) < REQUEST_CHUNKS:
            if batch and size + self._pending[0].size > REQUEST_BYTES:
                break
            chunk = self._pending.popleft()
            self._pending_cost -= chunk.cost
            size += chunk.size
            batch.append({"seq": self._next_seq, "stream": chunk.stream, "data": chunk.render()})
            self._next_seq += 1
        return batch

    def _flush(self, *, drain: bool) -> bool:
        """Send what is pending; ``True`` when done for now, ``False`` after a failure.

        A failed batch stays in flight and is retried first, unchanged. Without ``drain``,
        sending continues after the first request only while a full batch is waiting.
        """
        first = True
        while True:
            with self._lock:
                if self.stopped:
                    return True
                if self._inflight is None:
                    wanted = first or drain or self._pending_cost >= BATCH_BYTES
                    if not self._pending or not wanted:
                        return True
                    self._inflight = self._next_batch()
                batch = self._inflight
            first = False
            try:
                reply = self._post(batch)
            except LeaseLost:
                self._on_lease_lost()
                return True
            except ApiError as exc:
                if not is_retryable_status(exc.status):
                    self._give_up(f"live output rejected for good ({exc}); not streaming more")
                    return True
                logger.warning("live output not accepted (%s); will retry", exc)
                return False
            except httpx.HTTPError as exc:
                logger.warning("live output not accepted (%s); will retry", exc)
                return False
            with self._lock:
                self._inflight = None
            if reply.cancel:
                self._request_kill(KILLED)

    def _give_up(self, message: str) -> None:
        """Stop streaming for good; the final report still carries the output's tail."""
        with self._lock:
            self.stopped = True
            self._pending.clear()
            self._pending_cost = 0
            self._inflight = None
        logger.warning(message)

    def _on_lease_lost(self) -> None:
        self._give_up("live output refused with 409: the lease is stale; killing the job")
        self._request_kill(LEASE_LOST)

    def _request_kill(self, reason: str) -> None:
        with self._lock:
            if self._kill_requested:
                return
            self._kill_requested = True
        self._kill(reason)
