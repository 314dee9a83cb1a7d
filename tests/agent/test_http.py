"""The ``http`` action against real servers on loopback addresses, SSRF checks included."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.agent import netguard
from agents.agent.actions import ActionResult
from agents.agent.runner import Runner
from agents.agent.safehttp import BODY_LIMIT

from .helpers import make_spec, wait_until
from .webserver import WebServer, make_tls

LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
def web() -> Iterator[WebServer]:
    server = WebServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def _run(runner: Runner, allow: tuple[str, ...] = LOOPBACK, **params: Any) -> ActionResult:
    return runner.run(make_spec(action="http", network_allow=allow, **params))


def test_get_returns_the_http_result(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/json"))

    assert result.status == "completed", result.error
    assert result.error is None
    assert result.http is not None
    assert set(result.http) == {"status", "headers", "body", "json", "url"}
    assert result.http["status"] == 200
    assert result.http["json"] == {"ok": True, "n": 1}
    assert result.http["body"] == '{"ok": true, "n": 1}'
    assert result.http["headers"]["content-type"] == "application/json"
    assert result.http["url"] == web.url("/json")
    assert web.seen()[0].method == "GET"


def test_text_response_has_no_json(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/text"), method="get")

    assert result.http is not None
    assert (result.http["body"], result.http["json"]) == ("hello", None)


def test_loopback_is_refused_without_an_allow_list(runner: Runner, web: WebServer) -> None:
    result = _run(runner, allow=(), url=web.url("/json"))

    assert result.status == "failed"
    assert result.error == "blocked: 127.0.0.1, a loopback address not in the network allow-list"
    assert web.seen() == []

    by_name = _run(runner, allow=(), url=web.url("/json", host="localhost"))
    assert by_name.error is not None
    assert by_name.error.startswith("blocked: localhost resolves to 127.0.0.1, a loopback")
    assert web.seen() == []


def test_agent_environment_allow_list(
    runner: Runner, web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_HTTP_ALLOW", "10.0.0.0/8, 127.0.0.1")
    assert _run(runner, allow=(), url=web.url("/json")).status == "completed"


def test_allow_list_by_host_name(runner: Runner, web: WebServer) -> None:
    result = _run(runner, allow=("localhost",), url=web.url("/json", host="localhost"))

    assert result.status == "completed", result.error
    assert web.seen()[0].headers["Host"] == f"localhost:{web.port}"
    assert _run(runner, allow=("localhost",), url=web.url("/json")).status == "failed"


def test_redirects_are_followed(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/redirect?to=/redirect%3Fto%3D/json"))

    assert result.status == "completed", result.error
    assert result.http is not None and result.http["url"] == web.url("/json")
    assert [seen.path for seen in web.seen()] == [
        "/redirect?to=/redirect%3Fto%3D/json",
        "/redirect?to=/json",
        "/json",
    ]


def test_303_after_post_continues_with_get(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/redirect?code=303&to=/echo"), json={"a": 1})

    assert result.http is not None
    assert result.http["json"]["method"] == "GET"
    assert result.http["json"]["body"] == ""
    assert "content-type" not in result.http["json"]["headers"]


def test_307_keeps_method_and_body(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/redirect?code=307&to=/echo"), method="PUT", body="data")

    assert result.http is not None
    assert (result.http["json"]["method"], result.http["json"]["body"]) == ("PUT", "data")


def test_redirect_from_an_allowed_host_to_a_denied_address_is_refused(
    runner: Runner, web: WebServer
) -> None:
    other = WebServer(host="127.0.0.2").start()
    try:
        target = other.url("/json")
        result = _run(runner, allow=("127.0.0.1/32",), url=web.url(f"/redirect?to={target}"))

        assert result.status == "failed"
        assert result.error == (
            "blocked: 127.0.0.2, a loopback address not in the network allow-list "
            f"(redirected from {web.url(f'/redirect?to={target}')})"
        )
        assert len(web.seen()) == 1
        assert other.seen() == [], "the denied address must never be contacted"
    finally:
        other.stop()


def test_credentials_are_not_forwarded_to_another_origin(runner: Runner, web: WebServer) -> None:
    other = WebServer().start()
    try:
        result = _run(
            runner,
            url=web.url(f"/redirect?to={other.url('/echo')}"),
            headers={"Authorization": "Bearer abc", "X-Trace": "1", "host": "evil.example"},
        )
        assert result.http is not None
        headers = result.http["json"]["headers"]
        assert "authorization" not in headers
        assert headers["x-trace"] == "1"
        assert headers["host"] == f"127.0.0.1:{other.port}"
        assert web.seen()[0].headers["Authorization"] == "Bearer abc"
        assert web.seen()[0].headers["Host"] == f"127.0.0.1:{web.port}"
    finally:
        other.stop()


def test_redirect_loops_stop_after_10_hops(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/loop"))

    assert (result.status, result.error) == ("failed", "too many redirects (more than 10)")
    assert len(web.seen()) == 11


def test_follow_redirects_false_returns_the_redirect(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/redirect?to=/json"), follow_redirects=False)

    assert (result.status, result.error) == ("failed", "HTTP 302 (expected 2xx)")
    assert result.http is not None and result.http["headers"]["location"] == "/json"
    ok = _run(runner, url=web.url("/redirect?to=/json"), follow_redirects=False, expect_status=302)
    assert ok.status == "completed"


@pytest.mark.parametrize(
    ("path", "expect", "status", "error"),
    [
        ("/status/503", 200, "failed", "HTTP 503 (expected 200)"),
        ("/status/503", [503, 200], "completed", None),
        ("/status/404", None, "failed", "HTTP 404 (expected 2xx)"),
        ("/status/204", None, "completed", None),
        ("/status/201", [200, 202], "failed", "HTTP 201 (expected 200, 202)"),
    ],
)
def test_expect_status(
    runner: Runner, web: WebServer, path: str, expect: Any, status: str, error: str | None
) -> None:
    params: dict[str, Any] = {"url": web.url(path)}
    if expect is not None:
        params["expect_status"] = expect
    result = _run(runner, **params)

    assert (result.status, result.error) == (status, error)
    assert result.http is not None and result.http["status"] == int(path.rsplit("/", 1)[1])


def test_post_json_with_headers_and_query(runner: Runner, web: WebServer) -> None:
    result = _run(
        runner,
        url=web.url("/echo?a=1"),
        json={"text": "hi", "n": [1, 2]},
        headers={"X-Token": "t"},
        query={"b": "two words"},
    )

    assert result.status == "completed", result.error
    echo = result.http["json"] if result.http else {}
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo?a=1&b=two+words"
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-token"] == "t"
    assert echo["headers"]["user-agent"].startswith("switchyard-agent/")
    assert json.loads(echo["body"]) == {"text": "hi", "n": [1, 2]}


def test_body_is_capped_at_1mib(runner: Runner, web: WebServer) -> None:
    result = _run(runner, url=web.url("/big"))

    assert result.status == "completed"
    assert result.http is not None
    marker = f"\n[switchyard: body truncated after {BODY_LIMIT} bytes]"
    assert result.http["body"] == "x" * BODY_LIMIT + marker
    assert result.http["json"] is None


def test_parse_json(runner: Runner, web: WebServer) -> None:
    ok = _run(runner, url=web.url("/json"), parse="json")
    assert ok.outputs["json"] == {"ok": True, "n": 1}

    bad = _run(runner, url=web.url("/text"), parse="json")
    assert bad.status == "failed"
    assert bad.error is not None and bad.error.startswith("parse: json: the response body")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused(runner: Runner) -> None:
    result = _run(runner, url=f"http://127.0.0.1:{_closed_port()}/")

    assert (result.status, result.error) == ("failed", "connection refused")


def test_request_timeout(runner: Runner, web: WebServer) -> None:
    started = time.monotonic()
    result = _run(runner, url=web.url("/slow"), timeout="0.5s")

    assert (result.status, result.error) == ("failed", "timeout after 0.5s")
    assert time.monotonic() - started < 5


def test_job_timeout_shorter_than_the_request_timeout(runner: Runner, web: WebServer) -> None:
    spec = make_spec(action="http", network_allow=LOOPBACK, timeout_s=0.5, url=web.url("/slow"))
    result = runner.run(spec)

    assert (result.status, result.error) == ("timeout", "timed out after 0.5s")


def test_kill_interrupts_a_pending_request(runner: Runner, web: WebServer) -> None:
    spec = make_spec(action="http", network_allow=LOOPBACK, url=web.url("/slow"))
    results: list[ActionResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(spec)))
    thread.start()
    wait_until(web.slow_started.is_set, message="request to arrive")

    runner.cancel(spec.job_id, "killed by the control plane")
    asked = time.monotonic()
    thread.join(timeout=5)

    assert time.monotonic() - asked < 2
    assert (results[0].status, results[0].error) == ("failed", "killed by the control plane")


class FakeDns:
    """Answers for made-up names (never asks a real resolver); IP literals pass through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]):
        self.answers = answers
        self.calls: dict[str, int] = {}
        self._real = socket.getaddrinfo
        monkeypatch.setattr(netguard.socket, "getaddrinfo", self)

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.answers:
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            except OSError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            return self._real(host, port, *args, **kwargs)
        count = self.calls[host] = self.calls.get(host, 0) + 1
        addresses = self.answers[host][min(count, len(self.answers[host])) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port))) for a in addresses]


def test_dns_failure_is_classified(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeDns(monkeypatch, {})
    result = _run(runner, url="http://nowhere.test/")

    assert result.status == "failed"
    assert result.error == "DNS: cannot resolve nowhere.test (Name or service not known)"


def test_the_vetted_address_is_used_without_resolving_again(
    runner: Runner, web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding resolver: the first answer passes the check, later ones would not.
    dns = FakeDns(monkeypatch, {"rebind.test": [["127.0.0.1"], ["10.9.9.9"]]})
    url = f"http://rebind.test:{web.port}/echo"
    result = _run(runner, allow=("127.0.0.1/32",), url=url)

    assert result.status == "completed", result.error
    assert dns.calls == {"rebind.test": 1}
    assert result.http is not None and result.http["url"] == url
    assert web.seen()[0].headers["Host"] == f"rebind.test:{web.port}"


def test_a_name_with_any_denied_address_is_refused(
    runner: Runner, web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeDns(monkeypatch, {"mixed.test": [["127.0.0.1", "10.1.2.3"]]})
    result = _run(runner, url=f"http://mixed.test:{web.port}/json")

    assert result.error == (
        "blocked: mixed.test resolves to 10.1.2.3, a private address not in the network allow-list"
    )
    assert web.seen() == []


def test_https_verifies_the_real_host_name_while_connecting_to_the_vetted_ip(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, context = make_tls(tmp_path)
    server = WebServer(tls=context).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        ok = _run(runner, allow=("localhost",), url=server.url("/json", host="localhost"))
        assert ok.status == "completed", ok.error
        assert server.sni == ["localhost"]
        assert server.seen()[0].headers["Host"] == f"localhost:{server.port}"

        wrong_name = _run(runner, url=server.url("/json", host="127.0.0.1"))
        assert wrong_name.status == "failed"
        assert wrong_name.error is not None
        assert wrong_name.error.startswith("TLS: IP address mismatch")

        monkeypatch.delenv("SSL_CERT_FILE")
        untrusted = _run(runner, allow=("localhost",), url=server.url("/json", host="localhost"))
        assert untrusted.error is not None and untrusted.error.startswith("TLS: ")
        assert "local issuer" in untrusted.error
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "params.url is required and must be a non-empty string"),
        ({"url": "ftp://127.0.0.1/x"}, "unsupported URL scheme 'ftp' (use http or https)"),
        ({"url": "http://127.0.0.1/", "json": {}, "body": "x"}, "set either params.json or"),
        ({"url": "http://127.0.0.1/", "method": "BREW"}, "params.method must be one of"),
        ({"url": "http://127.0.0.1/", "expect_status": "ok"}, "params.expect_status must be"),
        ({"url": "http://127.0.0.1/", "timeout": "soon"}, "params.timeout: invalid duration"),
    ],
)
def test_invalid_params(runner: Runner, params: dict[str, Any], error: str) -> None:
    result = _run(runner, **params)

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error)
