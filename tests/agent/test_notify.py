"""The ``notify`` action: webhook payloads per kind, through the same SSRF checks as ``http``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agents.agent.actions import ActionResult
from agents.agent.runner import Runner

from .helpers import make_spec
from .webserver import WebServer

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
def web() -> Iterator[WebServer]:
    server = WebServer().start()
    try:
        yield server
    finally:
        server.stop()


def _notify(allow: tuple[str, ...] = LOOPBACK, **params: Any) -> ActionResult:
    return Runner().run(make_spec(action="notify", network_allow=allow, **params))


def _posted(web: WebServer) -> Any:
    (request,) = web.seen()
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.body)


def test_generic_is_the_default(web: WebServer) -> None:
    result = _notify(url=web.url("/echo"), message="deploy done")

    assert result.status == "completed", result.error
    assert result.http is not None and result.http["status"] == 200
    assert _posted(web) == {"text": "deploy done"}


def test_slack_with_channel(web: WebServer) -> None:
    _notify(url=web.url("/echo"), message="hi", kind="slack", channel="#ops")

    assert _posted(web) == {"text": "hi", "channel": "#ops"}


def test_teams_message_card(web: WebServer) -> None:
    _notify(url=web.url("/echo"), message="line one\nline two", kind="Teams", subject="Deploy")

    assert _posted(web) == {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": "Deploy",
        "title": "Deploy",
        "text": "line one\nline two",
    }


def test_custom_json_body_and_headers(web: WebServer) -> None:
    _notify(
        url=web.url("/echo"),
        message="ignored",
        kind="webhook",
        json={"blocks": []},
        headers={"X-Key": "k"},
    )

    assert _posted(web) == {"blocks": []}
    assert web.seen()[0].headers["X-Key"] == "k"


def test_a_private_webhook_url_is_refused_without_the_allow_list(web: WebServer) -> None:
    result = _notify(allow=(), url=web.url("/echo"), message="x")

    assert result.status == "failed"
    assert result.error == "blocked: 127.0.0.1, a loopback address not in the network allow-list"
    assert web.seen() == []


def test_webhook_errors_fail_the_job(web: WebServer) -> None:
    result = _notify(url=web.url("/status/500"), message="x")

    assert (result.status, result.error) == ("failed", "HTTP 500 (expected 2xx)")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"url": "http://127.0.0.1/"}, "params.message is required"),
        ({"message": "x"}, "params.url is required"),
        ({"message": "x", "kind": "email", "to": ["a@b"]}, "notify kind 'email' is not supported"),
        ({"message": "x", "url": "http://127.0.0.1/", "kind": "pager"}, "params.kind must be"),
    ],
)
def test_invalid_params(params: dict[str, Any], error: str) -> None:
    result = _notify(**params)

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error)
