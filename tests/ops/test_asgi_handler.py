"""The ASGI handler runs each request's synchronous work on one thread and reuses those threads."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

import httpx
from django.core.signals import request_finished, request_started

from orchestrator.asgi_handler import RequestThreads, SyncChainASGIHandler


class ThreadLog:
    """Which threads ran the request signals and `get_response`, per request path."""

    def __init__(self, handler: SyncChainASGIHandler, barrier: threading.Barrier | None = None):
        self.threads: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.barrier = barrier
        self._handler_get_response = handler.get_response
        handler.get_response = self.get_response  # type: ignore[method-assign]

    def get_response(self, request):
        self.threads[request.path].append(("view", threading.get_ident()))
        if self.barrier is not None:
            self.barrier.wait()
        return self._handler_get_response(request)

    def started(self, scope, **kwargs) -> None:
        self.threads[scope["path"]].append(("started", threading.get_ident()))


async def get_all(handler: SyncChainASGIHandler, paths: list[str], *, together: bool) -> list:
    transport = httpx.ASGITransport(app=handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        if together:
            return await asyncio.gather(*(client.get(path) for path in paths))
        return [await client.get(path) for path in paths]


def test_a_request_runs_on_one_thread_and_the_next_request_reuses_it():
    handler = SyncChainASGIHandler(RequestThreads(keep=4))
    log = ThreadLog(handler)
    finished_on: list[int] = []

    def finished(**kwargs) -> None:
        finished_on.append(threading.get_ident())

    request_started.connect(log.started)
    request_finished.connect(finished)
    try:
        responses = asyncio.run(
            get_all(handler, [f"/healthz?n={n}" for n in range(5)], together=False)
        )
    finally:
        request_started.disconnect(log.started)
        request_finished.disconnect(finished)

    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json() for r in responses] == [{"status": "ok"}] * 5
    [(started, started_thread), (view, view_thread)] = log.threads["/healthz"][:2]
    assert (started, view) == ("started", "view")
    assert started_thread == view_thread != threading.get_ident()
    every_thread = {ident for _, ident in log.threads["/healthz"]} | set(finished_on)
    assert every_thread == {view_thread}, "five requests in a row should share one thread"
    assert len(finished_on) == 5
    assert handler.threads.idle() == 1


def test_concurrent_requests_run_on_threads_of_their_own():
    """Four requests each wait inside the view for all four to arrive: they would deadlock (and
    the barrier time out) if the handler served them one at a time."""
    handler = SyncChainASGIHandler(RequestThreads(keep=2))
    log = ThreadLog(handler, barrier=threading.Barrier(4, timeout=30))
    paths = [f"/healthz/{n}" for n in range(4)]

    responses = asyncio.run(get_all(handler, paths, together=True))

    assert [r.status_code for r in responses] == [404] * 4
    view_threads = {log.threads[path][0][1] for path in paths}
    assert len(view_threads) == 4
    assert handler.threads.idle() == 2, "only `keep` idle threads are kept"


def test_request_threads_are_reused_and_extra_idle_ones_shut_down():
    threads = RequestThreads(keep=1)
    first, second = threads.take(), threads.take()
    assert first is not second
    first_thread = first.submit(threading.get_ident).result(timeout=30)
    threads.give_back(first)
    threads.give_back(second)
    assert threads.idle() == 1
    again = threads.take()
    assert again is first
    assert again.submit(threading.get_ident).result(timeout=30) == first_thread
    assert second._shutdown
