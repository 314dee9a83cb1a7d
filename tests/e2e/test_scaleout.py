"""Scale-out (issue #11, item 5): several web processes and control workers (each with its own
beat scheduler) share one PostgreSQL and one Redis database.

`make test-scaleout` runs the whole end-to-end suite on a stack scaled to two of each
(`SWITCHYARD_E2E_SCALE=2`). The tests here need at least two web processes and two schedulers
whatever the mode: on a stack with fewer they start the missing ones for themselves and stop
them afterwards, so they prove the same thing in `make test`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from websockets.sync.client import ClientConnection, connect

from orchestrator.localstack import ManagedProcess
from tests.e2e.helpers import create, execute, wait_for_status
from tests.stack_fixtures import E2E_SCALE
from tests.support import wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "local-stack-password-1"  # DJANGO_SUPERUSER_PASSWORD of the local stack
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CRON_SENT = re.compile(r"Scheduler: Sending due task fire-cron-triggers")


def alive(stack, prefix: str) -> list[ManagedProcess]:
    return [p for p in stack.processes if p.name.startswith(prefix) and p.popen.poll() is None]


@pytest.fixture
def two_webs(stack) -> Iterator[list[str]]:
    """URLs of two distinct web processes of the stack (one started here if it has one)."""
    started = [stack.start_web(f"web-extra-{n}") for n in range(len(stack.urls), 2)]
    try:
        yield list(stack.urls[:2])
    finally:
        for process in started:
            stack.stop_process(process)


@pytest.fixture
def two_schedulers(stack) -> Iterator[list[ManagedProcess]]:
    """Two running control workers, each with its own beat (started here if missing)."""
    running = alive(stack, "control")
    started = [stack.start_control(f"control-extra-{n}") for n in range(len(running), 2)]
    try:
        yield [*running, *started][:2]
    finally:
        for process in started:
            stack.stop_process(process)


def pinned(stack, url: str) -> httpx.Client:
    """An API client that talks to one web process only."""
    return httpx.Client(base_url=url, headers={"Authorization": f"Token {stack.token}"}, timeout=30)


def test_the_stack_has_the_requested_size(stack):
    assert len(stack.urls) >= E2E_SCALE
    assert len(set(stack.urls)) == len(stack.urls)
    assert len(alive(stack, "control")) >= E2E_SCALE
    for url in stack.urls:
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200


def test_api_clients_spread_requests_over_every_web_process(stack, two_webs):
    """The round-robin client reaches both processes: each serves every other request, and a
    write through one is read back through the other (no per-process state)."""
    with stack.client() as client:
        seen = []
        client.event_hooks["response"].append(lambda r: seen.append(r.request.url.port))
        slug = f"e2e-rr-{uuid.uuid4().hex[:6]}"
        create(client, {"slug": slug, "nodes": [{"id": "a", "type": "wait", "duration": "1s"}]})
        for _ in range(3):
            assert client.get(f"/api/v1/workflows/{slug}/").status_code == 200
    ports = {httpx.URL(url).port for url in stack.urls}
    assert set(seen) == ports
    assert Counter(seen).most_common(1)[0][1] <= len(seen) // len(ports) + 1


def test_no_job_is_dispatched_or_run_twice(stack, two_webs, two_schedulers, tmp_path):
    """Many fan-out runs started concurrently through both web processes; two control workers
    sweep and re-publish; two agents, each reporting to a different web process, consume one
    pool. Every node runs exactly once: one job row (attempt 1), one side effect."""
    ledger = tmp_path / "ledger.txt"
    pool = f"scale-{uuid.uuid4().hex[:6]}"
    agents = [
        stack.start_agent(f"{pool}-{n}", [pool], concurrency=2, url=url)
        for n, url in enumerate(two_webs)
    ]
    nodes = ["a", "b", "c", "d"]
    definition = {
        "slug": pool,
        "nodes": [
            {
                "id": node,
                "action": "shell",
                "pool": pool,
                "with": {
                    "command": 'echo "$SWITCHYARD_EXECUTION_ID $SWITCHYARD_NODE_ID'
                    f' $SWITCHYARD_JOB_ID" >> {ledger}'
                },
            }
            for node in nodes
        ],
    }
    runs = 8
    try:
        with stack.client() as client:
            create(client, definition)
            started: list[str] = []

            def start_one() -> None:
                with stack.client() as own:
                    started.append(execute(own, pool)["id"])

            threads = [threading.Thread(target=start_one) for _ in range(runs)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(started) == runs
            finished = [wait_for_status(client, run_id, timeout=120) for run_id in started]
    finally:
        for agent in agents:
            stack.stop_process(agent)

    assert {run["status"] for run in finished} == {"completed"}
    jobs = [job for run in finished for job in run["jobs"]]
    assert len(jobs) == runs * len(nodes)
    assert {job["attempt"] for job in jobs} == {1}
    assert Counter((run["id"], job["node_id"]) for run in finished for job in run["jobs"]) == {
        (run["id"], node): 1 for run in finished for node in nodes
    }
    effects = [line.split() for line in ledger.read_text().splitlines()]
    assert len(effects) == len(jobs)
    assert sorted(job_id for _, _, job_id in effects) == sorted(job["id"] for job in jobs)
    assert {job["agent"] for job in jobs} == {f"{pool}-0", f"{pool}-1"}


def test_cron_ticks_fire_once_with_two_schedulers(stack, two_schedulers):
    """Both schedulers keep sending the firing task while several triggers have a due tick:
    each tick starts exactly one run and has exactly one CronFire row."""
    slugs = [f"e2e-scale-cron-{n}-{uuid.uuid4().hex[:4]}" for n in range(3)]
    year = datetime.now(UTC).year
    with stack.client() as admin:
        trigger_ids = []
        for slug in slugs:
            create(
                admin,
                {
                    "slug": slug,
                    "nodes": [{"id": "tick", "type": "wait", "duration": "1s"}],
                    "triggers": [{"type": "cron", "cron": "0 0 1 1 *", "misfire": "run_once"}],
                },
            )
            trigger_ids.append(
                admin.get(f"/api/v1/workflows/{slug}/triggers/").json()["results"][0]["id"]
            )

        def sent_by_each() -> list[int]:
            return [
                len(CRON_SENT.findall(p.log.read_text(errors="replace"))) for p in two_schedulers
            ]

        before = sent_by_each()
        with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                "UPDATE orchestrator_trigger SET cron_cursor = %s WHERE id = ANY(%s)",
                (datetime(year - 1, 12, 31, tzinfo=UTC), trigger_ids),
            )

        def runs_of(slug: str) -> list[dict]:
            return admin.get("/api/v1/executions/", params={"workflow": slug}).json()["results"]

        wait_until(lambda: all(runs_of(slug) for slug in slugs), timeout=60, what="cron runs")
        wait_until(
            lambda: all(now >= then + 2 for now, then in zip(sent_by_each(), before, strict=True)),
            timeout=60,
            what="both schedulers to send the firing task twice more",
        )
        for slug in slugs:
            [run] = runs_of(slug)
            assert run["trigger"]["kind"] == "cron"
            assert run["trigger"]["scheduled_at"] == f"{year}-01-01T00:00:00+00:00"
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            fires = conn.execute(
                "SELECT trigger_id, count(*) FROM orchestrator_cronfire"
                " WHERE trigger_id = ANY(%s) GROUP BY trigger_id",
                (trigger_ids,),
            ).fetchall()
        assert sorted(fires) == sorted((trigger_id, 1) for trigger_id in trigger_ids)


def session_cookie(url: str) -> str:
    """Sign in through the login form of the web process at `url`; return the cookie header."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        form = browser.get("/login/")
        token = CSRF_INPUT.search(form.text).group(1)
        signed_in = browser.post(
            "/login/",
            data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
        )
        assert signed_in.status_code == 302, signed_in.text
        return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


def live_socket(url: str, cookie: str) -> ClientConnection:
    ws_url = url.replace("http://", "ws://") + "/ws/live/"
    return connect(ws_url, additional_headers={"Cookie": cookie, "Origin": url}, open_timeout=10)


def next_message(socket: ClientConnection, matches, timeout: float = 20) -> dict:
    """The first message on `socket` for which `matches` is true (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching live message before the deadline")
        message = json.loads(socket.recv(timeout=remaining))
        if matches(message):
            return message


def subscribe(socket: ClientConnection, topic: str) -> None:
    socket.send(json.dumps({"subscribe": topic}))
    next_message(socket, lambda m: m.get("type") == "subscribed" and m.get("topic") == topic)


def test_websocket_updates_reach_clients_on_every_web_process(stack, two_webs):
    """A browser session signed in on one web process works on the other (no sticky sessions),
    and a run started or cancelled through either process reaches the sockets of both."""
    cookie = session_cookie(two_webs[0])
    slug = f"e2e-scale-live-{uuid.uuid4().hex[:6]}"
    with stack.client() as admin:
        create(admin, {"slug": slug, "nodes": [{"id": "hold", "type": "wait", "duration": "1h"}]})
    with contextlib.ExitStack() as opened:
        sockets = [opened.enter_context(live_socket(url, cookie)) for url in two_webs]
        for socket in sockets:
            subscribe(socket, "executions")
        for source, target in ((0, 1), (1, 0)):
            with pinned(stack, two_webs[source]) as client:
                run = execute(client, slug)
            for socket in sockets:
                changed = next_message(
                    socket,
                    lambda m, run=run: (
                        m.get("type") == "execution.changed" and m["execution"]["id"] == run["id"]
                    ),
                )
                assert changed["execution"]["workflow"] == slug
            run_socket = sockets[source]
            run_socket.send(json.dumps({"subscribe": "execution", "id": run["id"]}))
            next_message(run_socket, lambda m: m.get("type") == "subscribed")
            with pinned(stack, two_webs[target]) as client:
                assert (
                    client.post(f"/api/v1/executions/{run['id']}/cancel/", json={}).status_code
                    == 200
                )
            events = next_message(
                run_socket,
                lambda m, run=run: (
                    m.get("type") == "execution.events"
                    and m["execution_id"] == run["id"]
                    and m["status"] == "cancelled"
                ),
            )
            assert events["seq"] > 0
            for socket in sockets:
                next_message(
                    socket,
                    lambda m, run=run: (
                        m.get("type") == "execution.changed"
                        and m["execution"]["id"] == run["id"]
                        and m["execution"]["status"] == "cancelled"
                    ),
                )
            with pinned(stack, two_webs[target]) as client:
                wait_for_status(client, run["id"])
