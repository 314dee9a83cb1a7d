"""W4 live latency: from a job report to the WebSocket message in subscribed browsers' place.

Clients log in like a browser (session cookie, same-origin `Origin`), open `/ws/live/` and
subscribe to one execution. Latency is the receive time minus the `timestamp` of each
`job.finished` event, which the control plane stamps when the agent's report arrives (same
machine, same clock). With many clients, every client must receive every event of the run:
the set of event ids each one saw is compared with the execution log.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time

import httpx
import websockets

from bench.figures import parse_time, percentile
from orchestrator.localstack import LocalStack

ADMIN_PASSWORD = "local-stack-password-1"


def session_cookie(stack: LocalStack) -> str:
    """Log in through the login form, as a browser does; return the `sessionid` cookie."""
    with httpx.Client(base_url=stack.url) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        response = client.post(
            "/login/",
            data={
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": token.group(1) if token else "",
            },
            headers={"Referer": f"{stack.url}/login/"},
        )
        if response.status_code not in (200, 302) or "sessionid" not in client.cookies:
            raise RuntimeError(f"login failed: HTTP {response.status_code}")
        return client.cookies["sessionid"]


def watched_definition(steps: int, hold_s: float) -> dict:
    """A short wait (so every client subscribes before anything happens), then a chain."""
    nodes: list[dict] = [{"id": "hold", "type": "wait", "duration": f"{hold_s}s", "on": {}}]
    previous = nodes[0]
    for index in range(steps):
        node = {"id": f"s{index}", "action": "shell", "with": {"command": "sleep 0.02"}}
        previous["on"] = {"success": node["id"]}
        nodes.append(node)
        previous = node
    return {"slug": f"bench-live-{steps}", "nodes": nodes}


class Watcher:
    """One WebSocket client subscribed to one execution, recording what it receives."""

    def __init__(self, stack: LocalStack, cookie: str, execution_id: str) -> None:
        self.url = stack.url.replace("http://", "ws://") + "/ws/live/"
        self.headers = {"Cookie": f"sessionid={cookie}", "Origin": stack.url}
        self.execution_id = execution_id
        self.event_ids: set[int] = set()
        self.latencies_ms: list[float] = []
        self.subscribed = asyncio.Event()
        self.finished = asyncio.Event()

    async def run(self) -> None:
        async with websockets.connect(
            self.url, additional_headers=self.headers, open_timeout=30, max_size=None
        ) as socket:
            await socket.send(json.dumps({"subscribe": "execution", "id": self.execution_id}))
            async for raw in socket:
                received = time.time()
                message = json.loads(raw)
                if message.get("type") == "subscribed":
                    self.subscribed.set()
                elif message.get("type") == "execution.events":
                    for event in message["events"]:
                        self.event_ids.add(event["id"])
                        if event["kind"] == "job.finished":
                            self.latencies_ms.append(
                                (received - parse_time(event["timestamp"]).timestamp()) * 1000
                            )
                    if message.get("status") in ("completed", "failed", "cancelled", "timed_out"):
                        self.finished.set()
                        return


async def watch_one_run(stack: LocalStack, cookie: str, clients: int, steps: int) -> dict:
    hold_s = 2.0 + clients / 50
    async with httpx.AsyncClient(
        base_url=stack.url, headers={"Authorization": f"Token {stack.token}"}, timeout=60
    ) as api:
        await api.post("/api/v1/workflows/", json={"definition": watched_definition(steps, hold_s)})
        started = await api.post(f"/api/v1/workflows/bench-live-{steps}/execute/", json={})
        started.raise_for_status()
        execution_id = started.json()["id"]
        watchers = [Watcher(stack, cookie, execution_id) for _ in range(clients)]
        tasks = [asyncio.create_task(w.run()) for w in watchers]
        await asyncio.wait_for(
            asyncio.gather(*(w.subscribed.wait() for w in watchers)), timeout=hold_s
        )
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120 + steps)
        rows: list[dict] = []
        url: str | None = f"/api/v1/executions/{execution_id}/log/"
        while url:
            page = (await api.get(url)).json()
            rows += page["results"]
            url = page.get("next")
    subscribed_at = min(
        parse_time(r["timestamp"]).timestamp() for r in rows if r["kind"] == "job.queued"
    )
    expected = {r["id"] for r in rows if parse_time(r["timestamp"]).timestamp() >= subscribed_at}
    lost = sum(len(expected - w.event_ids) for w in watchers)
    latencies = [value for w in watchers for value in w.latencies_ms]
    return {"latencies": latencies, "lost": lost, "expected": len(expected)}


def scenario_live(stack: LocalStack, runs: int = 5, clients: int = 200) -> dict:
    cookie = session_cookie(stack)
    single = [asyncio.run(watch_one_run(stack, cookie, 1, 20)) for _ in range(runs)]
    latencies = [value for run in single for value in run["latencies"]]
    crowd = asyncio.run(watch_one_run(stack, cookie, clients, 20))
    return {
        "scenario": "W4_live",
        "reports": len(latencies),
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(percentile(latencies, 95), 2),
        "clients": clients,
        "crowd_events_each": crowd["expected"],
        "crowd_lost": crowd["lost"],
        "crowd_latency_ms_p95": round(percentile(crowd["latencies"], 95), 2),
    }
