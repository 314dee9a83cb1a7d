"""A database outage is a 503 with Retry-After (never a 500), and both clients wait and retry."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import httpx
import psycopg
import pytest

from agents.agent.client import retry_after_seconds
from executions.api import ExecutionLogView
from executions.models import Execution, Job
from orchestrator.cli.main import Api, CliError, retry_after
from orchestrator.db_unavailable import DETAIL, DatabaseUnavailableApp
from tests.support import run_in_fresh_django, wait_until

pytestmark = pytest.mark.django_db


UNREACHABLE_PROBE = """
import asyncio

import django

django.setup()

import httpx
from django.core.signals import request_started
from django.db import connection

from orchestrator.asgi import application


def touch_the_database(**kwargs):
    connection.ensure_connection()


async def main():
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answers = [
            await client.get(
                "/api/v1/workflows/",
                headers={"Authorization": "Token syu_not-checked-the-db-is-down"},
            ),
            await client.get("/executions/", headers={"Cookie": "sessionid=" + "k" * 32}),
        ]
        # Before any middleware: Django's ASGI handler runs request_started receivers itself.
        request_started.connect(touch_the_database)
        answers.append(await client.get("/healthz"))
    for response in answers:
        print(
            response.request.url.path,
            response.status_code,
            response.headers.get("Retry-After"),
            response.text,
        )


asyncio.run(main())
"""


@pytest.mark.parametrize("pool", ["1", "0"])
def test_a_real_unreachable_database_is_503_with_retry_after(tmp_path, pool):
    """The real ASGI application with PostgreSQL really unreachable (nothing listens on the
    port), with and without the connection pool: an API request, a signed-in page and a
    request whose database work fails outside the middleware (in a `request_started` receiver)
    all answer 503 + Retry-After in the project's error shape."""

    lines = run_in_fresh_django(
        UNREACHABLE_PROBE,
        f"postgres://postgres@127.0.0.1:{closed_port()}/switchyard",
        tmp_path,
        DB_POOL=pool,
        DB_POOL_MIN_SIZE="0",
        DB_POOL_TIMEOUT="1",
    )
    assert [line.split(" ", 1)[0] for line in lines] == [
        "/api/v1/workflows/",
        "/executions/",
        "/healthz",
    ], lines
    for line in lines:
        _path, code, retry_after, body = line.split(" ", 3)
        assert (code, retry_after) == ("503", "2"), line
        assert json.loads(body) == {"detail": DETAIL, "errors": []}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused() -> psycopg.OperationalError:
    """A real connection error: PostgreSQL's client refused at a port nothing listens on."""
    try:
        psycopg.connect(host="127.0.0.1", port=closed_port(), user="postgres", dbname="x")
    except psycopg.OperationalError as error:
        return error
    raise AssertionError("a closed port accepted a connection")


def call_asgi(app, scope_type: str = "http") -> list[dict]:
    """Run one request through an ASGI app; return the messages it sent."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": scope_type, "method": "GET", "path": "/stream", "headers": []}
    asyncio.run(DatabaseUnavailableApp(app)(scope, receive, send))
    return sent


def test_the_asgi_wrapper_answers_only_an_outage_before_the_response_started():
    """After `http.response.start` the status is on the wire: the error propagates (the server
    closes the connection) instead of a second response; a bug is never disguised as 503."""

    async def fails_after_start(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise refused()

    async def bug_before_start(scope, receive, send) -> None:
        raise ZeroDivisionError

    async def outage_before_start(scope, receive, send) -> None:
        raise refused()

    with pytest.raises(psycopg.OperationalError):
        call_asgi(fails_after_start)
    with pytest.raises(ZeroDivisionError):
        call_asgi(bug_before_start)
    with pytest.raises(psycopg.OperationalError):
        call_asgi(outage_before_start, scope_type="websocket")

    start, body = call_asgi(outage_before_start)
    assert start["status"] == 503
    assert dict(start["headers"])[b"retry-after"] == b"2"
    assert json.loads(body["body"]) == {"detail": DETAIL, "errors": []}


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


class ScriptedServer:
    """A real HTTP server on loopback answering each request with the next scripted action:
    `(status, headers, body)`, or `DROP` to close the connection without answering."""

    DROP = "drop"

    def __init__(self, *script) -> None:
        import http.server
        import json
        import threading

        self.script = list(script)
        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.path, self.headers.get("Idempotency-Key", "")))
                action = outer.script.pop(0)
                if action == ScriptedServer.DROP:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, headers, body = action
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


UNAVAILABLE = (503, {"Retry-After": "0"}, {"detail": "The database is unavailable", "errors": []})


def test_cli_repeats_a_request_answered_503_then_succeeds():
    with ScriptedServer(UNAVAILABLE, UNAVAILABLE, (200, {}, [])) as server:
        cli = Api(server.url, "token")
        assert cli.get("/api/v1/workflows/") == []
    assert [path for path, _ in server.seen] == ["/api/v1/workflows/"] * 3


def test_cli_gives_up_on_503_after_its_budget():
    later = (503, {"Retry-After": "1"}, {"detail": "The database is unavailable", "errors": []})
    with ScriptedServer(later) as server:
        cli = Api(server.url, "token", unavailable_budget=0)
        with pytest.raises(CliError, match="503"):
            cli.get("/api/v1/workflows/")
    assert len(server.seen) == 1
    assert retry_after(_response(404)) is None


def test_cli_run_retries_a_lost_connection_with_its_idempotency_key():
    """A start whose connection dropped is repeated with the same key (the server starts
    nothing twice for one key); other requests are not repeated."""
    with ScriptedServer(ScriptedServer.DROP, (200, {}, {"id": "run-1"})) as server:
        cli = Api(server.url, "token")
        started = cli.post("/api/v1/workflows/w/execute/", {}, headers={"Idempotency-Key": "k1"})
        assert started == {"id": "run-1"}
    assert [key for _, key in server.seen] == ["k1", "k1"]

    with ScriptedServer(ScriptedServer.DROP) as server:
        cli = Api(server.url, "token")
        with pytest.raises(CliError):
            cli.post("/api/v1/workflows/")
    assert [key for _, key in server.seen] == [""]


def test_database_outage_inside_another_middleware_is_a_503_too(api, monkeypatch):
    """Sessions and authentication touch the database before any view; an outage there (a real
    refused connection, raised where the session middleware reads) must not become a 500."""
    from django.contrib.sessions.middleware import SessionMiddleware

    def unreachable(self, request):
        raise refused()

    monkeypatch.setattr(SessionMiddleware, "process_request", unreachable)
    api.raise_request_exception = False  # the test client re-raises what a server would log
    response = api.get("/api/v1/workflows/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["detail"] == DETAIL


ONE_STEP = {
    "slug": "outage",
    "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
}


@pytest.mark.django_db(transaction=True)
# The publish goes to the real broker on purpose (its signal is where the backend is cut).
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_a_start_whose_publish_hook_loses_the_database_is_not_a_500(api, caplog):
    """The long chaos profile's 500s: PostgreSQL restarted between a start's commit and its
    publish hook's UPDATE; Django's robust-hook log line needs `__qualname__`, which a
    `functools.partial` hook lacks, and the AttributeError answered 500 for a committed run.
    Here the backend is really terminated at that moment (when the hook publishes to the real
    broker): the run stays committed with its job pending for the sweeper, the hook's failure
    is logged, and the client gets a 503 it may retry (with its Idempotency-Key)."""
    from celery.signals import before_task_publish
    from django.db import connection

    created = api.post("/api/v1/workflows/", {"definition": ONE_STEP}, format="json")
    assert created.status_code == 201, created.content
    db = connection.settings_dict
    admin = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    terminated: list[int] = []

    def cut_the_connection(**kwargs) -> None:
        pid = connection.connection.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_until(
            lambda: (
                admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
                is None
            ),
            timeout=10,
            what=f"backend {pid} to exit",
        )
        terminated.append(pid)

    before_task_publish.connect(cut_the_connection, weak=False)
    try:
        response = api.post("/api/v1/workflows/outage/execute/", {}, format="json")
    finally:
        before_task_publish.disconnect(cut_the_connection)
        connection.close()
        admin.close()
    assert len(terminated) == 1
    assert (response.status_code, response["Retry-After"]) == (503, "2"), response.content
    [run] = Execution.objects.all()
    assert [job.status for job in Job.objects.filter(execution=run)] == ["pending"]
    assert "Error calling publish_jobs in on_commit()" in caplog.text
