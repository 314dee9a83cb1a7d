"""`make bench`: start the real stack and measure scenarios, printing one line per scenario and
writing JSON (default `var/bench-results.json`). Bounded: every wait has a deadline.

Scenarios: W1 chain (40 sequential `true` steps; per-step overhead = end of one job to start of
the next), W2 fan-out (1 → 100 → join; dispatch spread and join delay), W3 burst (N three-step
executions submitted at once, one start per request and again in batches of 100 through
`execute-batch`, on an agent of `--burst-slots` slots: throughput, end-to-end percentiles,
errors, peak RSS per process),
and the Celery floor (a plain Celery chain of the same 40 steps on the same Redis, run after each
W1 run when both are measured, so the W1 ratio compares runs made under the same conditions).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from bench.figures import parse_time, percentile
from bench.live import scenario_live
from orchestrator.localstack import (
    ROOT,
    LocalStack,
    Postgres,
    redis_url_with_db,
    wait_for,
)

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def chain_definition(steps: int) -> dict:
    nodes = []
    for index in range(steps):
        node = {"id": f"s{index}", "action": "shell", "with": {"command": "true"}}
        if index + 1 < steps:
            node["on"] = {"success": f"s{index + 1}"}
        nodes.append(node)
    return {"slug": f"bench-chain-{steps}", "nodes": nodes}


def fanout_definition(width: int, pool: str = "default") -> dict:
    children = [f"c{i}" for i in range(width)]
    shell = {"action": "shell", "pool": pool, "with": {"command": "true"}}
    nodes = [{"id": "root", **shell, "on": {"success": children}}]
    nodes += [{"id": c, **shell, "on": {"success": "gather"}} for c in children]
    nodes += [
        {"id": "gather", "type": "join", "on": {"success": "after"}},
        {"id": "after", **shell},
    ]
    return {"slug": f"bench-fanout-{width}-{pool}", "nodes": nodes}


def execution_status_probe(stack: LocalStack) -> Callable[[str], str]:
    """Read an execution's status straight from PostgreSQL: waiting costs the web nothing, so
    the figures are not skewed by the benchmark's own polling."""
    conn = psycopg.connect(stack.env["DATABASE_URL"], autocommit=True)

    def status(execution_id: str) -> str:
        row = conn.execute(
            "SELECT status FROM executions_execution WHERE id = %s", (execution_id,)
        ).fetchone()
        return row[0] if row else ""

    return status


def run_once(client, slug: str, status_of, timeout: float = 120) -> tuple[dict, float]:
    began = time.perf_counter()
    started = client.post(f"/api/v1/workflows/{slug}/execute/", json={})
    started.raise_for_status()
    execution_id = started.json()["id"]
    wait_for(
        lambda: status_of(execution_id) in TERMINAL,
        timeout=timeout,
        what=f"{slug} run",
        interval=0.01,
    )
    wall = time.perf_counter() - began
    body = client.get(f"/api/v1/executions/{execution_id}/").json()
    if body["status"] != "completed":
        raise RuntimeError(f"{slug} ended {body['status']}: {body['error']}")
    return body, wall


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process, its threads and its reaped children."""
    ticks = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(value) for value in fields[11:15]) / ticks
    return 0.0


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(c) for c in children]
    return pids


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on this machine (the server is shared, so this is
    only meaningful while nothing else uses it)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += cpu_seconds(int(entry.name))
    return total


def cpu_by_process(stack: LocalStack) -> dict[str, float]:
    return {
        p.name: sum(cpu_seconds(pid) for pid in process_tree(p.popen.pid)) for p in stack.processes
    } | {"postgres": postgres_cpu_seconds()}


def cpu_per_unit(before: dict[str, float], after: dict[str, float], units: int, label: str) -> dict:
    """`cpu_ms_per_<label>_<process>` for each process between two `cpu_by_process` readings."""
    return {
        f"cpu_ms_per_{label}_{name}": round((after[name] - before.get(name, 0.0)) * 1000 / units, 2)
        for name in after
    }


def shifted(
    before: dict[str, float], paused: dict[str, float], resumed: dict[str, float]
) -> dict[str, float]:
    """`before` moved forward by what each process spent between `paused` and `resumed`, so
    that CPU spent meanwhile (on the floor's runs) is not counted."""
    return {
        name: value + resumed.get(name, 0.0) - paused.get(name, 0.0)
        for name, value in before.items()
    }


def scenario_chain(
    stack: LocalStack,
    steps: int,
    runs: int,
    warmup: int,
    floor: Callable[[], float] | None = None,
    floor_totals: list[float] | None = None,
) -> dict:
    """W1. With `floor`, a plain Celery chain runs after each W1 run (its durations go to
    `floor_totals`): the host's speed drifts by a fifth within minutes, and a ratio of figures
    measured minutes apart measured the drift as much as Switchyard."""
    status_of = execution_status_probe(stack)
    with stack.client() as client:
        client.post("/api/v1/workflows/", json={"definition": chain_definition(steps)})
        slug = f"bench-chain-{steps}"
        for _ in range(warmup):
            run_once(client, slug, status_of)
        cpu_before = cpu_by_process(stack)
        gaps, totals, walls = [], [], []
        for _ in range(runs):
            body, wall = run_once(client, slug, status_of)
            jobs = sorted(body["jobs"], key=lambda j: int(j["node_id"][1:]))
            for before, after in itertools.pairwise(jobs):
                gaps.append(
                    (
                        parse_time(after["started_at"]) - parse_time(before["finished_at"])
                    ).total_seconds()
                    * 1000
                )
            totals.append(
                (parse_time(body["finished_at"]) - parse_time(body["started_at"])).total_seconds()
            )
            walls.append(wall)
            if floor is not None and floor_totals is not None:
                cpu_paused = cpu_by_process(stack)
                floor_totals.append(floor())
                cpu_before = shifted(cpu_before, cpu_paused, cpu_by_process(stack))
        cpu_after = cpu_by_process(stack)
    cpu_per_step = cpu_per_unit(cpu_before, cpu_after, runs * steps, "step")
    return {
        "scenario": "W1_chain",
        "steps": steps,
        "runs": runs,
        "step_overhead_ms_p50": round(percentile(gaps, 50), 2),
        "step_overhead_ms_p95": round(percentile(gaps, 95), 2),
        "run_s_p50": round(statistics.median(totals), 3),
        "run_wall_s_p50": round(statistics.median(walls), 3),
        **cpu_per_step,
    }


def start_agent_once(stack: LocalStack, name: str, pool: str, slots: int) -> None:
    """An agent of its own for a scenario, started by the first scenario that needs it."""
    if all(process.name != name for process in stack.processes):
        stack.start_agent(name, [pool], concurrency=slots)


def scenario_fanout(stack: LocalStack, width: int, runs: int, slots: int) -> dict:
    """W2 on a pool served by one agent with `slots` slots (started here on first use)."""
    status_of = execution_status_probe(stack)
    pool = f"fanout{slots}"
    start_agent_once(stack, f"bench-fanout-{slots}", pool, slots)
    definition = fanout_definition(width, pool)
    with stack.client() as client:
        client.post("/api/v1/workflows/", json={"definition": definition})
        slug = definition["slug"]
        run_once(client, slug, status_of)
        cpu_before = cpu_by_process(stack)
        spreads, joins, totals = [], [], []
        for _ in range(runs):
            body, _ = run_once(client, slug, status_of)
            jobs = {job["node_id"]: job for job in body["jobs"]}
            starts = [parse_time(jobs[f"c{i}"]["started_at"]) for i in range(width)]
            ends = [parse_time(jobs[f"c{i}"]["finished_at"]) for i in range(width)]
            spreads.append((max(starts) - min(starts)).total_seconds() * 1000)
            joins.append(
                (parse_time(jobs["after"]["queued_at"]) - max(ends)).total_seconds() * 1000
            )
            totals.append(
                (parse_time(body["finished_at"]) - parse_time(body["started_at"])).total_seconds()
            )
        cpu_after = cpu_by_process(stack)
    cpu_per_job = cpu_per_unit(cpu_before, cpu_after, runs * (width + 2), "job")
    return {
        "scenario": f"W2_fanout_{slots}slots",
        "width": width,
        "runs": runs,
        "dispatch_spread_ms_p50": round(statistics.median(spreads), 1),
        "dispatch_spread_ms_max": round(max(spreads), 1),
        "join_delay_ms_p50": round(statistics.median(joins), 2),
        "run_s_p50": round(statistics.median(totals), 3),
        **{
            key: value
            for key, value in cpu_per_job.items()
            if key.rpartition("_")[2] in ("web", "postgres", f"bench-fanout-{slots}")
        },
    }


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its children, in MiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def scenario_burst(
    stack: LocalStack, count: int, *, slots: int, workers: int = 16, batch: int = 0
) -> dict:
    """W3: `count` three-step executions submitted at once through the API: one start per
    request from `workers` clients, or with `batch`, `batch` runs per request
    (`execute-batch`). They run on a pool served by one agent with `slots` slots."""
    pool = f"burst{slots}"
    start_agent_once(stack, f"bench-burst-{slots}", pool, slots)
    slug = f"bench-burst-{batch}" if batch else "bench-burst"
    shell = {"action": "shell", "pool": pool, "with": {"command": "true"}}
    definition = {
        "slug": slug,
        "nodes": [
            {"id": "a", **shell, "on": {"success": "b"}},
            {"id": "b", **shell, "on": {"success": "c"}},
            {"id": "c", **shell},
        ],
    }
    errors = 0
    ids: list[str] = []
    with stack.client() as client:
        client.post("/api/v1/workflows/", json={"definition": definition})
    cpu_before = cpu_by_process(stack)
    began = time.perf_counter()

    clients = threading.local()
    opened = []

    def submit(runs: int) -> list[str | None]:
        """Start `runs` runs as a client starting many would: a kept-alive connection per
        thread, and only the run's id in the answer (`Prefer: return=minimal`)."""
        if not hasattr(clients, "http"):
            clients.http = stack.client()
            opened.append(clients.http)
        if not batch:
            response = clients.http.post(
                f"/api/v1/workflows/{slug}/execute/",
                json={},
                headers={"Prefer": "return=minimal"},
            )
            return [response.json()["id"] if response.status_code == 201 else None]
        response = clients.http.post(
            f"/api/v1/workflows/{slug}/execute-batch/", json={"runs": [{}] * runs}
        )
        if response.status_code != 201:
            return [None] * runs
        return [run["id"] for run in response.json()["results"]]

    sizes = [1] * count if not batch else [min(batch, count - i) for i in range(0, count, batch)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for started in pool.map(submit, sizes):
            for execution_id in started:
                if execution_id:
                    ids.append(execution_id)
                else:
                    errors += 1
    for client in opened:
        client.close()
    submitted = time.perf_counter() - began
    with stack.client() as client:

        def unfinished() -> int:
            body = client.get(
                f"/api/v1/executions/?workflow={slug}&status=pending,running&page_size=1"
            ).json()
            return len(body["results"])

        wait_for(lambda: unfinished() == 0, timeout=900, what="the burst to finish", interval=0.5)
        elapsed = time.perf_counter() - began
        rows = []
        url = f"/api/v1/executions/?workflow={slug}&page_size=500"
        while url:
            page = client.get(url).json()
            rows += page["results"]
            url = page["next"]
    cpu_after = cpu_by_process(stack)
    durations = [
        (parse_time(r["finished_at"]) - parse_time(r["created_at"])).total_seconds()
        for r in rows
        if r["finished_at"]
    ]
    failed = sum(1 for r in rows if r["status"] != "completed")
    return {
        "scenario": f"W3_burst_batches_of_{batch}" if batch else "W3_burst",
        "agent_slots": slots,
        "executions": len(rows),
        "submit_s": round(submitted, 2),
        "executions_per_s": round(len(rows) / elapsed, 1),
        "jobs_per_s": round(3 * len(rows) / elapsed, 1),
        "e2e_s_p50": round(percentile(durations, 50), 2),
        "e2e_s_p95": round(percentile(durations, 95), 2),
        "e2e_s_p99": round(percentile(durations, 99), 2),
        "errors": errors + failed,
        **cpu_per_unit(cpu_before, cpu_after, max(1, len(rows)), "execution"),
        **{f"rss_mb_{p.name}": peak_rss_mb(p.popen.pid) for p in stack.processes},
    }


def start_floor(stack: LocalStack, steps: int) -> Callable[[], float]:
    """Start the floor's Celery worker on the stack's Redis; returns a function running one
    plain chain of `steps` `true` subprocesses and giving its duration in seconds."""
    stack.spawn(
        "floor-worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.floor",
            "worker",
            "-Q",
            "floor",
            "--pool",
            "threads",
            "-c",
            "1",
            "--loglevel",
            "WARNING",
        ],
    )
    os.environ["REDIS_URL"] = stack.redis_url
    from celery import chain

    from bench.floor import app, run_true

    app.conf.broker_url = stack.redis_url
    app.conf.result_backend = stack.redis_url

    def run_chain() -> float:
        began = time.perf_counter()
        result = chain(run_true.s(), *[run_true.s() for _ in range(steps - 1)]).apply_async()
        result.get(timeout=120)
        return time.perf_counter() - began

    wait_for(lambda: app.control.ping(timeout=0.5), timeout=60, what="floor worker")
    run_chain()
    return run_chain


def floor_result(steps: int, totals: list[float]) -> dict:
    return {
        "scenario": "floor_celery_chain",
        "steps": steps,
        "runs": len(totals),
        "run_s_p50": round(statistics.median(totals), 3),
        "step_ms_p50": round(statistics.median(totals) / steps * 1000, 2),
    }


def scenario_floor(stack: LocalStack, steps: int, runs: int) -> dict:
    run_chain = start_floor(stack, steps)
    return floor_result(steps, [run_chain() for _ in range(runs)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "bench-results.json")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=2,
        help="uvicorn worker processes (one per core of the 2-core machine the figures are for)",
    )
    parser.add_argument("--burst", type=int, default=1000, help="W3 executions submitted at once")
    parser.add_argument(
        "--burst-slots",
        type=int,
        default=32,
        help="slots of the agent that runs W3 (its jobs are `true`: slots, not CPU, bound it)",
    )
    parser.add_argument("--clients", type=int, default=200, help="W4 WebSocket clients")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=int(os.environ.get("BENCH_REDIS_DB", "9")),
        help="Redis database the stack uses (flushed at start)",
    )
    parser.add_argument(
        "--only",
        default="",
        help=(
            "comma-separated scenarios to run (W1,W2,W3,W4,floor, or one variant: W2_2, "
            "W3_batched); default: all"
        ),
    )
    args = parser.parse_args(argv)
    wanted = {name.strip().upper() for name in args.only.split(",") if name.strip()}

    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    stack = LocalStack(
        workdir=workdir,
        database=f"switchyard_bench_{os.getpid()}",
        postgres=Postgres.from_url(args.postgres),
        redis_url=redis_url_with_db(args.redis, args.redis_db),
        extra_env={
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
        },
    )
    results = []
    try:
        stack.start(web_workers=args.web_workers)
        stack.start_agent("bench-agent", ["default"], concurrency=8)
        floor_totals: list[float] = []
        floor = start_floor(stack, 40) if not wanted or {"W1", "FLOOR"} <= wanted else None
        scenarios = {
            "W1": lambda: scenario_chain(
                stack, 40, args.runs, warmup=2, floor=floor, floor_totals=floor_totals
            ),
            "W2": lambda: scenario_fanout(stack, 100, max(3, args.runs // 2), slots=8),
            "W2_2": lambda: scenario_fanout(stack, 100, max(3, args.runs // 2), slots=2),
            "W3": lambda: scenario_burst(stack, args.burst, slots=args.burst_slots),
            "W3_batched": lambda: scenario_burst(
                stack, args.burst, slots=args.burst_slots, workers=4, batch=100
            ),
            "W4": lambda: scenario_live(stack, runs=max(3, args.runs // 4), clients=args.clients),
            "FLOOR": lambda: (
                floor_result(40, floor_totals) if floor else scenario_floor(stack, 40, args.runs)
            ),
        }
        for name, scenario in scenarios.items():
            if wanted and not {name.upper(), name.split("_")[0]} & wanted:
                continue
            result = scenario()
            results.append(result)
            print(" ".join(f"{key}={value}" for key, value in result.items()), flush=True)
    except BaseException:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.stop()
    floor = next((r for r in results if r["scenario"] == "floor_celery_chain"), None)
    chain = next((r for r in results if r["scenario"] == "W1_chain"), None)
    if floor and chain:
        ratio = round(chain["run_s_p50"] / floor["run_s_p50"], 2)
        print(f"scenario=W1_vs_floor ratio={ratio}")
        results.append({"scenario": "W1_vs_floor", "ratio": ratio})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
