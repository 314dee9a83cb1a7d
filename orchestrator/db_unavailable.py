"""Answer 503 with `Retry-After` while the database is unreachable, instead of a 500.

A PostgreSQL restart or failover makes every request that touches the database raise
`OperationalError`/`InterfaceError` (or a pool timeout, which Django wraps as one) for a few
seconds. Those are the server's trouble, not the client's: clients (the agent, the CLI, API
users) retry a 503 after `Retry-After`, so a restart costs a pause rather than a storm of 5xx
errors and lost reports.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import psycopg
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.dispatch import receiver
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
