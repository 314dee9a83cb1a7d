"""The ``http`` action: one HTTP request (redirects followed and vetted), result in ``http``.

Params (see the server's schema): ``url`` (required), ``method`` (default ``GET``, or ``POST``
when a ``json``/``body`` is given), ``headers``, ``query``, ``json`` or ``body``,
``expect_status`` (a code or a list; default any 2xx), ``follow_redirects`` (default true),
``timeout`` (duration, default 30s) and ``parse: json`` (the body becomes ``outputs.json``).
Destinations are checked against the SSRF deny-list unless the claim's ``network_allow`` or the
agent's ``SWITCHYARD_HTTP_ALLOW`` permits them.
"""

from __future__ import annotations

from agents.agent.actions import ActionResult, JobContext, register_action
from agents.agent.asyncrun import run_cancellable
from agents.agent.params import (
    ParamError,
    optional_bool,
    optional_duration,
    optional_str,
    required_str,
    string_map,
)
from agents.agent.safehttp import (
    DEFAULT_TIMEOUT_S,
    METHODS,
    HttpRequest,
    StatusExpectation,
    perform,
)


def build_request(params: dict) -> HttpRequest:
    """Validate the params into an ``HttpRequest``; raises ``ParamError``/``ValueError``."""
    url = required_str(params, "url")
    has_json, body = "json" in params, optional_str(params, "body")
    if has_json and body is not None:
        raise ParamError("set either params.json or params.body, not both")
    default_method = "POST" if has_json or body is not None else "GET"
    method = (optional_str(params, "method") or default_method).upper()
    if method not in METHODS:
        raise ParamError(f"params.method must be one of {', '.join(METHODS)}")
    query = params.get("query") or {}
    if not isinstance(query, dict):
        raise ParamError("params.query must be an object")
    options = {
        "headers": string_map(params, "headers"),
        "query": query,
        "follow_redirects": optional_bool(params, "follow_redirects", True),
        "timeout_s": optional_duration(params, "timeout", DEFAULT_TIMEOUT_S),
    }
    if has_json:
        return HttpRequest.with_json(method, url, params["json"], **options)
    return HttpRequest(method, url, content=body.encode() if body is not None else None, **options)


@register_action("http")
def http_action(ctx: JobContext) -> ActionResult:
    try:
        request = build_request(ctx.params)
        expect = StatusExpectation.parse(ctx.params.get("expect_status"))
    except ValueError as exc:
        return ActionResult.failure(str(exc))
    parse_json = ctx.params.get("parse") == "json"
    return run_cancellable(ctx, lambda: perform(ctx, request, expect, parse_json=parse_json))
