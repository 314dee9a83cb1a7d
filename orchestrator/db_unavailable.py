"""Answer 503 with `Retry-After` while the database is unreachable, instead of a 500.

A PostgreSQL restart or failover makes every request that touches the database raise
`OperationalError`/`InterfaceError` (or a pool timeout, which Django wraps as one) for a few
seconds. Those are the server's trouble, not the client's: clients (the agent, the CLI, API
users) retry a 503 after `Retry-After`, so a restart costs a pause rather than a storm of 5xx
errors and lost reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("switchyard.db")

RETRY_AFTER_SECONDS = 2
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError)


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached (as opposed to a bad query)."""
    return isinstance(error, UNAVAILABLE_ERRORS)


def unavailable_response() -> JsonResponse:
    """The project's error shape with status 503 and a `Retry-After` header."""
    response = JsonResponse(
        {"detail": "The database is unavailable; retry later.", "errors": []}, status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turns database-unavailable errors raised by views into 503 + `Retry-After`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

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
