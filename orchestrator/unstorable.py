"""Strings PostgreSQL cannot store: NUL, and lone UTF-16 surrogates (`"\\ud800"`). Refused as
input (400 with the field path) rather than failing with a 500 where a row is saved or looked up;
see also `orchestrator.parsers` for JSON bodies."""

from __future__ import annotations

import re

from django.http import HttpResponseBadRequest, JsonResponse

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "strings may not contain NUL (\\u0000) or lone surrogates (\\ud800-\\udfff)"


class UnstorableUrlMiddleware:
    """A NUL (or lone surrogate) in the path or a query parameter would reach a database lookup
    and fail there with a 500; answer 400 first (in the API's error shape under /api/)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        problems = [("path", request.path)] if UNSTORABLE.search(request.path) else []
        for key, values in request.GET.lists():
            if UNSTORABLE.search(key) or any(UNSTORABLE.search(value) for value in values):
                problems.append((UNSTORABLE.sub("\ufffd", key), "query"))
        if not problems:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            errors = [{"path": name, "message": MESSAGE} for name, _ in problems]
            return JsonResponse({"detail": "Invalid input.", "errors": errors}, status=400)
        return HttpResponseBadRequest(MESSAGE)
