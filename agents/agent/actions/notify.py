"""The ``notify`` action: post a message to a chat or generic incoming webhook.

Params: ``message`` (required), ``url`` (required here: the agent only speaks webhooks),
``kind`` (``slack``, ``teams`` or ``generic``/``webhook``; default generic), ``channel``
(slack), ``subject`` (teams title; a generic webhook gets it as ``subject``), ``headers``, and
``json`` to send a body of your own instead. Goes through the same SSRF checks as ``http``.
"""

from __future__ import annotations

from typing import Any

from agents.agent.actions import ActionResult, JobContext, register_action
from agents.agent.asyncrun import run_cancellable
from agents.agent.params import ParamError, optional_str, required_str, string_map
from agents.agent.safehttp import HttpRequest, StatusExpectation, perform

KINDS = ("slack", "teams", "generic")
_ALIASES = {"webhook": "generic"}


def build_payload(kind: str, message: str, *, channel: str | None, subject: str | None) -> Any:
    """The JSON body each kind of incoming webhook expects."""
    if kind == "teams":
        card: dict[str, Any] = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": subject or (message.strip().splitlines() or ["Switchyard"])[0][:80],
            "text": message,
        }
        if subject:
            card["title"] = subject
        return card
    payload: dict[str, Any] = {"text": message}
    if kind == "slack" and channel:
        payload["channel"] = channel
    if kind == "generic" and subject:
        payload["subject"] = subject
    return payload


def build_request(params: dict) -> HttpRequest:
    message = required_str(params, "message")
    kind = (optional_str(params, "kind") or "generic").lower()
    kind = _ALIASES.get(kind, kind)
    if kind == "email":
        raise ParamError("notify kind 'email' is not supported by the agent; use a webhook url")
    if kind not in KINDS:
        raise ParamError(f"params.kind must be one of {', '.join(KINDS)}, not {kind!r}")
    url = required_str(params, "url")
    if "json" in params:
        payload = params["json"]
    else:
        payload = build_payload(
            kind,
            message,
            channel=optional_str(params, "channel"),
            subject=optional_str(params, "subject"),
        )
    return HttpRequest.with_json("POST", url, payload, headers=string_map(params, "headers"))


@register_action("notify")
def notify(ctx: JobContext) -> ActionResult:
    try:
        request = build_request(ctx.params)
    except ValueError as exc:
        return ActionResult.failure(str(exc))
    return run_cancellable(ctx, lambda: perform(ctx, request, StatusExpectation()))
