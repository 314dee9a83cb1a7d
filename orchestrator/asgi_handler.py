"""Django's ASGI handler with one thread hop per request and request threads that are reused.

Every view and middleware of Switchyard is synchronous. Django's own `ASGIHandler` still builds
an asynchronous middleware chain, so a request went event loop → a thread for the synchronous
middleware → back to the loop (`async_to_sync` around the inner handler) → the same thread again
for the view; and each request got a thread of its own, created for it and thrown away after
(with a new database connection wrapper). Profiles of the agent-report hot path showed that
plumbing, not the view, as a large part of the web process's CPU.

`SyncChainASGIHandler` builds the synchronous middleware chain, runs it in a single
`sync_to_async` call, and hands each request a single-thread executor from a free list, so all of
a request's synchronous work (`request_started` receivers, middleware, view, `request_finished`
receivers) still runs on one thread, as Django's database connections require, and that thread
serves later requests as a WSGI server's would.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase

IDLE_THREADS_KEPT = 32


class RequestThreads:
    """A free list of single-thread executors: one per request in flight, reused afterwards.

    Concurrency is not capped here (as with Django's handler, a request never waits for a
    thread); at most `keep` idle threads are kept for later requests."""

    def __init__(self, keep: int = IDLE_THREADS_KEPT):
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)


class SyncChainASGIHandler(ASGIHandler):
    """`ASGIHandler` for an application whose middleware and views are all synchronous."""

    def __init__(self, threads: RequestThreads | None = None):
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = threads or RequestThreads()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
