"""Answer 503 with `Retry-After` while the database is unreachable, instead of a 500.

A PostgreSQL restart or failover makes every request that touches the database fail for a few
seconds (a connection cut, a refused or refused-for-now connection, a pool timeout). Those are the
server's trouble, not the client's: clients (the agent, the CLI, API users) retry a 503 after
`Retry-After`, so a restart costs a pause rather than a storm of 5xx errors and lost reports. A
query that fails on a healthy connection (a syntax error, a deadlock, a statement timeout) is a
bug to see, and stays a 500.

Three layers turn such an error into the same 503: `DatabaseUnavailableMiddleware` for views and
the middleware inside it, the `got_request_exception` signal for middleware whose errors Django
has already made a 500, and `DatabaseUnavailableApp` around the ASGI application for what is
raised outside the middleware chain (e.g. `request_started` receivers) before the response starts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psycopg
from django.core.signals import got_request_exception
from django.db import Error as DjangoDatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg.pq import ConnStatus
from psycopg_pool import PoolTimeout

logger = logging.getLogger("switchyard.db")

RETRY_AFTER_SECONDS = 2
DETAIL = "The database is unavailable; retry later."

# SQLSTATEs of a server that cannot serve right now: class 08 (connection exception) plus these.
UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: terminated by a fast/immediate shutdown or pg_terminate_backend
        "57P02",  # crash_shutdown: another backend crashed, the server is resetting
        "57P03",  # cannot_connect_now: starting up, shutting down or in recovery
        "53300",  # too_many_connections
    }
)
SQLITE_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot serve right now (as opposed to a bad query).

    Django re-raises a driver error as its own class with the driver's error as `__cause__`, so
    the decision is taken on the driver's error: PostgreSQL by SQLSTATE, or (without one, when
    psycopg or libpq raised it on the client side) by the connection it broke; SQLite by its
    result code, where only a busy or locked database counts."""
    if isinstance(error, DjangoDatabaseError) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, psycopg.Error):
        return _psycopg_unavailable(error)
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in SQLITE_UNAVAILABLE_CODES
    return False


def _psycopg_unavailable(error: psycopg.Error) -> bool:
    if isinstance(error, PoolTimeout):
        return True
    if error.sqlstate:
        return error.sqlstate.startswith("08") or error.sqlstate in UNAVAILABLE_SQLSTATES
    if error.pgconn is not None:
        # A failed connection attempt: refused, reset, or refused by the server (too many
        # connections, starting up), which psycopg reports without the server's SQLSTATE.
        return error.pgconn.status == ConnStatus.BAD
    # psycopg reports a connection that is closed or was cut mid-query ("the connection is
    # closed", "consuming input failed: server closed the connection unexpectedly") as an
    # OperationalError without SQLSTATE; its InterfaceErrors are misuse (a closed cursor).
    return isinstance(error, psycopg.OperationalError)


def unavailable_response() -> JsonResponse:
    """The project's error shape with status 503 and a `Retry-After` header."""
    response = JsonResponse({"detail": DETAIL, "errors": []}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


UNAVAILABLE_MARK = "_switchyard_database_unavailable"


@receiver(got_request_exception)
def mark_database_unavailable(sender, request=None, **kwargs) -> None:
    """Django turns an exception raised by any middleware (sessions, authentication…) into a
    500 before an outer middleware sees it; the signal still sees the exception, so the request
    is marked and the outermost middleware answers 503 instead."""

    error = sys.exc_info()[1]
    if request is not None and error is not None and is_database_unavailable(error):
        setattr(request, UNAVAILABLE_MARK, True)


class DatabaseUnavailableMiddleware:
    """Turns database-unavailable errors raised by views and by the middleware inside this one
    (it must come first in MIDDLEWARE) into 503 + `Retry-After`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, UNAVAILABLE_MARK, False):
            logger.warning("database unavailable during %s %s", request.method, request.path)
            return unavailable_response()
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        logger.warning(
            "database unavailable during %s %s: %s: %s",
            request.method,
            request.path,
            type(exception).__name__,
            exception,
        )
        return unavailable_response()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNAVAILABLE_BODY = json.dumps({"detail": DETAIL, "errors": []}).encode()
_UNAVAILABLE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_UNAVAILABLE_BODY)).encode()),
    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
]


class DatabaseUnavailableApp:
    """Wraps the HTTP application: a database-unavailable error that escapes Django's handler
    before the response has started (Django's ASGI handler runs `request_started` receivers,
    e.g. `close_old_connections`, outside every middleware, and the server would answer 500)
    becomes the same 503 + `Retry-After` as in the middleware. Any other error, and any error
    after the response started, propagates unchanged. No database work of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started or not is_database_unavailable(error):
                raise
            logger.warning(
                "database unavailable during %s %s (outside the middleware): %s: %s",
                scope.get("method"),
                scope.get("path"),
                type(error).__name__,
                error,
            )
            await send(
                {"type": "http.response.start", "status": 503, "headers": _UNAVAILABLE_HEADERS}
            )
            await send({"type": "http.response.body", "body": _UNAVAILABLE_BODY})
