"""SSRF: the agent's `http` action, with no allow-list (the default), refuses loopback,
link-local/metadata and private addresses however they are spelled, and refuses a redirect from
an allowed server to any of them, without ever contacting the target."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.agent.runner import Runner
from tests.agent.helpers import make_spec
from tests.agent.webserver import WebServer


@pytest.fixture
def victim() -> Iterator[WebServer]:
    """A real server on 127.0.0.1 that must never see a request."""
    server = WebServer(host="127.0.0.1").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redirector() -> Iterator[WebServer]:
    """The one allowed server (127.0.0.2) that redirects wherever it is told."""
    server = WebServer(host="127.0.0.2").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def spellings(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/json",
        f"http://localhost:{port}/json",
        f"http://[::1]:{port}/json",
        f"http://[::ffff:127.0.0.1]:{port}/json",
        f"http://[::ffff:7f00:1]:{port}/json",
        f"http://2130706433:{port}/json",
        f"http://0x7f000001:{port}/json",
        f"http://127.1:{port}/json",
        f"http://0.0.0.0:{port}/json",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://[fe80::1]/",
    ]


def test_octal_spelling_is_not_even_a_valid_url(runner, victim):
    """httpx refuses `0177.0.0.1` (octal 127) as an invalid IPv4 address before any lookup."""
    result = runner.run(
        make_spec(action="http", url=f"http://0177.0.0.1:{victim.port}/", timeout_s=10)
    )
    assert result.status == "failed" and "Invalid IPv4 address" in result.error
    assert victim.seen() == []


def test_every_spelling_of_an_internal_address_is_refused_by_default(runner, victim):
    outcomes = {}
    for url in spellings(victim.port):
        result = runner.run(make_spec(action="http", url=url, timeout_s=10))
        outcomes[url] = (result.status, result.error)
    refused = {url: o for url, o in outcomes.items() if o[0] == "failed" and "blocked" in o[1]}
    assert refused.keys() == outcomes.keys(), {
        u: o for u, o in outcomes.items() if u not in refused
    }
    assert victim.seen() == []


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_from_an_allowed_server_to_internal_addresses_are_refused(
    runner, victim, redirector, code
):
    for target in spellings(victim.port):
        start = redirector.url(f"/redirect?code={code}&to={target}")
        result = runner.run(
            make_spec(action="http", url=start, network_allow=("127.0.0.2/32",), timeout_s=10)
        )
        assert result.status == "failed", (target, result)
        assert "blocked" in result.error and "redirected from" in result.error, result.error
    assert victim.seen() == []
    assert len(redirector.seen()) == len(spellings(victim.port))


def test_the_allowed_server_itself_is_reachable(runner, redirector):
    """The refusals above are the guard's doing, not a broken request."""
    result = runner.run(
        make_spec(
            action="http",
            url=redirector.url("/json"),
            network_allow=("127.0.0.2/32",),
            timeout_s=10,
        )
    )
    assert result.status == "completed", result.error
