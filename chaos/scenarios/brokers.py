"""Items 3 and 4: the chaos stack's own Redis killed (-9) and restarted, with and without an
append-only file, during a dispatch burst; and a throwaway PostgreSQL cluster restarted with
`pg_ctl restart -m immediate` during a burst while a client keeps calling the API. Proves that
PostgreSQL is the truth and Redis only a doorbell (DESIGN §5.1, §5.3): queues lost with Redis are
re-published from PostgreSQL; a database restart is 503 + Retry-After, never a 500, and loses no
transition."""

from __future__ import annotations

import threading
import time

import httpx

from chaos.harness import ChaosStack, Context, Supervisor, Verdict, chain, now
from chaos.services import PostgresCluster, RedisServer
from orchestrator.localstack import Postgres


def redis_restart(ctx: Context, appendonly: bool) -> Verdict:
    verdict = Verdict(f"redis_restart_aof_{'on' if appendonly else 'off'}")
    redis = RedisServer(appendonly=appendonly).start()
    try:
        name = f"redis_{int(appendonly)}"
        with ChaosStack(ctx, name, redis.url) as chaos, Supervisor(chaos.stack):
            chaos.stack.start_agent("agent-1", ["default"], concurrency=4)
            slug = chaos.create_workflow(chain("redis", 3, sleep=0.3))
            for _ in range(ctx.profile.redis_restarts):
                ids = chaos.submit(slug, ctx.profile.burst_size)
                ctx.rng_sleep(0.3, 1.5)
                moment = now()
                redis.kill()
                time.sleep(1)
                redis.start()
                verdict.faults += 1
                recovery = chaos.recovered_after(moment, 90)
                if recovery is not None:
                    verdict.recoveries.append(recovery)
                chaos.judge(verdict, chaos.settle(ids, timeout=180))
    finally:
        redis.stop()
    return verdict


def redis_restart_aof_on(ctx: Context) -> Verdict:
    return redis_restart(ctx, appendonly=True)


def redis_restart_aof_off(ctx: Context) -> Verdict:
    return redis_restart(ctx, appendonly=False)


class Prober:
    """Keeps calling the API (a read and a write) while the database restarts; tallies statuses."""

    def __init__(self, client: httpx.Client, slug: str) -> None:
        self.client = client
        self.slug = slug
        self.statuses: dict[int, int] = {}
        self.missing_retry_after = 0
        self.created: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            for method, path in (
                ("GET", "/api/v1/executions/"),
                ("POST", f"/api/v1/workflows/{self.slug}/execute/"),
            ):
                try:
                    response = self.client.request(
                        method, path, json={} if method == "POST" else None
                    )
                except httpx.HTTPError:
                    continue
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code == 503 and "Retry-After" not in response.headers:
                    self.missing_retry_after += 1
                if method == "POST" and response.status_code == 201:
                    self.created.append(response.json()["id"])


def postgres_restart(ctx: Context) -> Verdict:
    verdict = Verdict("postgres_restart")
    redis = RedisServer(appendonly=True).start()
    cluster = PostgresCluster().start()
    try:
        postgres = Postgres(port=cluster.port)
        with (
            ChaosStack(ctx, "postgres", redis.url, postgres=postgres) as chaos,
            Supervisor(chaos.stack),
        ):
            chaos.stack.start_agent("agent-1", ["default"], concurrency=4)
            slug = chaos.create_workflow(chain("pg", 3, sleep=0.3))
            ids: list[str] = []
            with Prober(chaos.stack.client(), slug) as prober:
                for _ in range(ctx.profile.pg_restarts):
                    ids += chaos.submit(slug, ctx.profile.burst_size // 2)
                    ctx.rng_sleep(0.3, 1.5)
                    moment = now()
                    cluster.restart_immediate()
                    verdict.faults += 1
                    recovery = chaos.recovered_after(moment, 90)
                    if recovery is not None:
                        verdict.recoveries.append(recovery)
            chaos.judge(verdict, chaos.settle(ids + prober.created, timeout=240))
            server_errors = sum(
                n for status, n in prober.statuses.items() if status >= 500 and status != 503
            )
            verdict.extra |= {
                "probe_requests": sum(prober.statuses.values()),
                "http_503": prober.statuses.get(503, 0),
                "http_5xx_other": server_errors,
            }
            if server_errors:
                verdict.problems.append(f"5xx other than 503 during restarts: {prober.statuses}")
            if prober.missing_retry_after:
                verdict.problems.append(f"{prober.missing_retry_after} 503s without Retry-After")
    finally:
        cluster.stop()
        redis.stop()
    return verdict


SCENARIOS = {
    "redis_restart_aof_on": redis_restart_aof_on,
    "redis_restart_aof_off": redis_restart_aof_off,
    "postgres_restart": postgres_restart,
}
