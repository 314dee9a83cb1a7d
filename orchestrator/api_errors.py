"""One error shape for every API response: `{detail, errors: [{path, message}]}`.

Clients get the field path of every problem (e.g. `definition.nodes[2].on.success`), including
problems found deep inside a workflow definition or a template, and never a 500 for bad input.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from orchestrator.engine import DefinitionError, TemplateError


class Conflict(exceptions.APIException):
    """The request is valid but the resource's state forbids it (e.g. cancelling a finished run)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict with the current state of the resource."
    default_code = "conflict"


class PathError(exceptions.APIException):
    """A 400 carrying already-structured `(path, message)` problems."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, issues: list[tuple[str, str]], detail: str = "Invalid input.") -> None:
        super().__init__(detail=detail)
        self.issues = issues


def join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def flatten_errors(data: Any, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error structure into a flat list of `{path, message}`."""
    if isinstance(data, dict):
        issues = []
        for key, value in data.items():
            if isinstance(key, int):
                key_path = f"[{key}]"
            else:
                key_path = "" if key in ("non_field_errors", "detail") else str(key)
            issues.extend(flatten_errors(value, join_path(prefix, key_path)))
        return issues
    if isinstance(data, list):
        if all(isinstance(item, str) for item in data):
            return [{"path": prefix, "message": str(item)} for item in data]
        issues = []
        for index, item in enumerate(data):
            if isinstance(item, str):
                issues.append({"path": prefix, "message": item})
            elif item:
                issues.extend(flatten_errors(item, f"{prefix}[{index}]"))
        return issues
    return [{"path": prefix, "message": str(data)}]


def definition_error_response(error: DefinitionError, prefix: str) -> Response:
    issues = [{"path": join_path(prefix, i.path), "message": i.message} for i in error.issues]
    return Response({"detail": "Invalid input.", "errors": issues}, status=400)


def render_errors_as_json(context: dict) -> None:
    """Errors are JSON in the error shape even when the client negotiated another format (e.g.
    `?format=csv` on the export); the browsable API keeps its HTML."""
    request = context.get("request")
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is not None and renderer.media_type not in ("application/json", "text/html"):
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def exception_handler(exc: Exception, context: dict) -> Response | None:
    render_errors_as_json(context)
    if isinstance(exc, DefinitionError):
        return definition_error_response(exc, getattr(exc, "path_prefix", ""))
    if isinstance(exc, TemplateError):
        return Response(
            {"detail": "Invalid template.", "errors": [{"path": exc.path, "message": exc.message}]},
            status=400,
        )
    if isinstance(exc, PathError):
        errors = [{"path": path, "message": message} for path, message in exc.issues]
        return Response({"detail": str(exc.detail), "errors": errors}, status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "Invalid input.", "errors": flatten_errors(exc.detail)}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": []}
    return response


def not_found(request, exception: Exception | None = None):
    """`handler404`: a URL under /api/ that no route matches answers in the API's error shape
    (JSON, like every other API 4xx); pages keep Django's HTML 404."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "errors": []}, status=404)
    return page_not_found(request, exception)
