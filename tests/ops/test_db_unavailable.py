"""A database outage is a 503 with Retry-After (never a 500), and both clients wait and retry."""

from __future__ import annotations

import uuid

import httpx
import pytest
from django.db import InterfaceError, OperationalError

from agents.agent.client import retry_after_seconds
from executions.api import ExecutionLogView
from orchestrator.cli.main import Api, CliError, retry_after

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_database_unavailable_is_503_with_retry_after(api, monkeypatch, error):
    def unreachable(self):
        raise error("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(ExecutionLogView, "get_queryset", unreachable)

    response = api.get(f"/api/v1/executions/{uuid.uuid4()}/log/")

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert response.json() == {"detail": "The database is unavailable; retry later.", "errors": []}


def test_other_errors_are_not_disguised_as_503(api, monkeypatch):
    def broken(self):
        raise ZeroDivisionError

    monkeypatch.setattr(ExecutionLogView, "get_queryset", broken)
    api.raise_request_exception = False

    assert api.get(f"/api/v1/executions/{uuid.uuid4()}/log/").status_code == 500


def _response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"detail": "x", "errors": []})


def test_agent_reads_retry_after_of_503_only():
    assert retry_after_seconds(_response(503, **{"Retry-After": "2"})) == 2.0
    assert retry_after_seconds(_response(503, **{"Retry-After": "9999"})) == 30.0
    assert retry_after_seconds(_response(503, **{"Retry-After": "soon"})) == 0.0
    assert retry_after_seconds(_response(500, **{"Retry-After": "2"})) == 0.0
    assert retry_after_seconds(None) == 0.0


def test_cli_repeats_a_request_answered_503_then_succeeds():
    answers = [_response(503, **{"Retry-After": "0"}), _response(503), httpx.Response(200, json=[])]
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    cli = Api("http://control.test", "token")
    cli.http = httpx.Client(base_url="http://control.test", transport=httpx.MockTransport(handler))

    assert cli.get("/api/v1/workflows/") == []
    assert seen == ["/api/v1/workflows/"] * 3


def test_cli_gives_up_on_503_after_its_budget():
    cli = Api("http://control.test", "token", unavailable_budget=0)
    cli.http = httpx.Client(
        base_url="http://control.test",
        transport=httpx.MockTransport(lambda request: _response(503, **{"Retry-After": "1"})),
    )

    with pytest.raises(CliError, match="503"):
        cli.get("/api/v1/workflows/")
    assert retry_after(_response(404)) is None


def test_cli_run_retries_a_lost_connection_with_its_idempotency_key():
    """A start whose connection dropped is repeated with the same key (the server starts
    nothing twice for one key); other requests are not repeated."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Idempotency-Key", ""))
        if len(seen) == 1:
            raise httpx.ReadError("connection reset")
        return httpx.Response(200, json={"id": "run-1"})

    cli = Api("http://control.test", "token")
    cli.http = httpx.Client(base_url="http://control.test", transport=httpx.MockTransport(handler))
    assert cli.post("/api/v1/workflows/w/execute/", {}, headers={"Idempotency-Key": "k1"}) == {
        "id": "run-1"
    }
    assert seen == ["k1", "k1"]

    seen.clear()
    with pytest.raises(CliError):
        cli.post("/api/v1/workflows/")
    assert seen == [""]


@pytest.mark.django_db
def test_database_outage_inside_another_middleware_is_a_503_too(api, monkeypatch):
    """Sessions and authentication touch the database before any view; an outage there must
    not become a 500 either."""
    from django.contrib.sessions.middleware import SessionMiddleware

    def unreachable(self, request):
        raise OperationalError("connection refused")

    monkeypatch.setattr(SessionMiddleware, "process_request", unreachable)
    api.raise_request_exception = False  # the test client re-raises what a server would log
    response = api.get("/api/v1/workflows/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["detail"] == "The database is unavailable; retry later."
