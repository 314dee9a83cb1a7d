"""The chaos stack: LocalStack with fast sweeps and a ledger, a Supervisor that restarts killed
processes, a TCP proxy that can partition an agent, and the verdict every scenario prints."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from chaos.ledger import APPEND, Ledger
from orchestrator.localstack import LocalStack, ManagedProcess, Postgres

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
HEARTBEAT_INTERVAL = 1.0
FAST_ENV = {
    "SWITCHYARD_SWEEP_INTERVAL": "0.5",
    "SWITCHYARD_REPUBLISH_PENDING_AFTER": "1",
    "SWITCHYARD_REPUBLISH_DISPATCHED_AFTER": "4",
    "SWITCHYARD_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
    "SWITCHYARD_JOB_TIMEOUT_GRACE": "5",
    "DB_POOL_TIMEOUT": "3",
}


def now() -> datetime:
    return datetime.now(UTC)


def chain(
    slug: str, steps: int, sleep: float = 0.2, retries: int = 3, pool: str | None = None, **extra
) -> dict:
    """`steps` shell steps in a row; each appends its effect to the ledger, then sleeps."""
    nodes = []
    for index in range(steps):
        node = {
            "id": f"s{index}",
            "action": "shell",
            "with": {"command": f"{APPEND} && sleep {sleep}"},
            "retries": {"max": retries, "delay": "0s"},
        }
        if pool:
            node["pool"] = pool
        if index + 1 < steps:
            node["on"] = {"success": f"s{index + 1}"}
        nodes.append(node)
    return {"slug": slug, "nodes": nodes, **extra}


class Supervisor:
    """Restarts any stack process that exits (after killing what is left of its process group),
    like systemd's Restart=always; `hold(name)` keeps one down on purpose."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.restarts: dict[str, int] = {}
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def process(self, name: str) -> ManagedProcess:
        """The live process called `name`, waiting out a restart in progress (between the
        supervisor removing the dead one and spawning its successor)."""
        deadline = time.monotonic() + 30
        while True:
            found = self.find(name)
            if found is not None or time.monotonic() > deadline:
                if found is None:
                    raise LookupError(f"no process {name!r} in the stack")
                return found
            time.sleep(0.05)

    def find(self, name: str) -> ManagedProcess | None:
        return next((p for p in list(self.stack.processes) if p.name == name), None)

    def is_ready(self, name: str) -> bool:
        """Up and serving again: the web answers /readyz, a Celery worker logged `ready.`."""
        process = self.find(name)
        if process is None or process.popen.poll() is not None:
            return False
        if name == "web":
            return self.stack.ready()
        return b" ready." in process.log.read_bytes()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for process in list(self.stack.processes):
                if process.popen.poll() is not None and process.name not in self.held:
                    self.restart(process)

    def restart(self, process: ManagedProcess) -> ManagedProcess:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait()
        self.stack.processes.remove(process)
        process.log.rename(process.log.with_suffix(f".{time.monotonic_ns()}.log"))
        self.restarts[process.name] = self.restarts.get(process.name, 0) + 1
        return self.stack.spawn(process.name, list(process.popen.args))


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(child) for child in path.read_text().split()]
    return []


class TcpProxy:
    """Forwards a local port to the web; `partition()` silently stops forwarding (like an
    iptables DROP: connections hang, nothing is refused) until `heal()` cuts them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.generation = 0
        self.sockets: list[tuple[int, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def partition(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        with self.lock:
            self.generation += 1
            for _, sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self.sockets.clear()
        self.open.set()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.open.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self.lock:
            generation = self.generation
            self.sockets += [(generation, client), (generation, upstream)]
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.open.wait()
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Verdict:
    """One scenario's figures; `ok` is what `make chaos` exits on."""

    scenario: str
    runs: int = 0
    faults: int = 0
    lost: int = 0
    duplicated: int = 0
    non_terminal: int = 0
    recoveries: list[float] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.non_terminal or self.problems)

    def line(self) -> str:
        p99 = percentile(self.recoveries, 99)
        fields = {
            "scenario": self.scenario,
            "runs": self.runs,
            "faults": self.faults,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "non_terminal": self.non_terminal,
            "p50_recovery_s": round(percentile(self.recoveries, 50), 2),
            "p99_recovery_s": round(p99, 2),
            **self.extra,
            "ok": self.ok,
        }
        return " ".join(f"{key}={value}" for key, value in fields.items())


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass
class Profile:
    """How much of each fault: `quick` for CI, `long` for hundreds of faults."""

    name: str
    bursts: int
    burst_size: int
    kills_per_burst: int
    agent_rounds: int
    redis_restarts: int
    pg_restarts: int
    poison_runs: int
    approval_runs: int


QUICK = Profile("quick", 1, 12, 4, 1, 1, 2, 1, 3)
LONG = Profile("long", 10, 30, 12, 8, 8, 15, 5, 10)


@dataclass
class Context:
    workdir: Path
    postgres: Postgres
    rng: random.Random
    profile: Profile
    verbose: bool = False

    def rng_sleep(self, low: float, high: float) -> None:
        """Wait a random moment, so faults land at different points of the work."""
        time.sleep(self.rng.uniform(low, high))


class ChaosStack:
    """A LocalStack on its own Redis and database plus the ledger database, for one scenario."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        redis_url: str,
        postgres: Postgres | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.ledger_db = f"switchyard_chaos_ledger_{name}"
        self.ledger = Ledger(ctx.postgres.recreate(self.ledger_db))
        workdir = ctx.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        self.stack = LocalStack(
            workdir=workdir,
            database=f"switchyard_chaos_{name}",
            postgres=postgres or ctx.postgres,
            redis_url=redis_url,
            extra_env=FAST_ENV | {"CHAOS_LEDGER_URL": self.ledger.url} | (env or {}),
        )

    def __enter__(self) -> ChaosStack:
        self.stack.start()
        self.ledger.create()
        self.http = self.stack.client()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        if exc[0] is not None or self.ctx.verbose:
            print(self.stack.logs(tail=3000))
        self.stack.stop()
        self.ctx.postgres.drop(self.ledger_db)

    def request(self, method: str, path: str, deadline: float = 120, **kwargs) -> httpx.Response:
        """An API call that rides out restarts: connection errors and 502/503 are retried."""
        end = time.monotonic() + deadline
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in (502, 503):
                    return response
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"{method} {path} kept failing for {deadline}s")
            time.sleep(0.2)

    def create_workflow(self, definition: dict) -> str:
        response = self.request("POST", "/api/v1/workflows/", json={"definition": definition})
        response.raise_for_status()
        return definition["slug"]

    def submit(self, slug: str, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            response = self.request("POST", f"/api/v1/workflows/{slug}/execute/", json={})
            response.raise_for_status()
            ids.append(response.json()["id"])
        return ids

    def detail(self, execution_id: str) -> dict:
        return self.request("GET", f"/api/v1/executions/{execution_id}/").json()

    def settle(self, ids: list[str], timeout: float) -> dict[str, dict]:
        """Wait until every execution is terminal (or the deadline passes); return the details."""
        done: dict[str, dict] = {}
        end = time.monotonic() + timeout
        while len(done) < len(ids) and time.monotonic() < end:
            for execution_id in ids:
                if execution_id not in done:
                    body = self.detail(execution_id)
                    if body["status"] in TERMINAL:
                        done[execution_id] = body
            time.sleep(0.3)
        for execution_id in ids:
            done.setdefault(execution_id, self.detail(execution_id))
        return done

    def judge(self, verdict: Verdict, runs: dict[str, dict], expect: str = "completed") -> Verdict:
        """Count lost and duplicated effects from the ledger and the API."""
        ledger = self.ledger.rows()
        effects: dict[str, int] = {}
        for job_id, *_ in ledger:
            effects[job_id] = effects.get(job_id, 0) + 1
        verdict.runs += len(runs)
        verdict.duplicated += sum(count - 1 for count in effects.values())
        for body in runs.values():
            if body["status"] not in TERMINAL:
                verdict.non_terminal += 1
                continue
            if body["status"] != expect:
                verdict.lost += 1
                verdict.problems.append(f"{body['id']} {body['status']}: {body['error']}")
            succeeded: dict[str, int] = {}
            for job in body["jobs"]:
                if job["status"] == "completed":
                    succeeded[job["node_id"]] = succeeded.get(job["node_id"], 0) + 1
                    if job["id"] not in effects:
                        verdict.lost += 1
            verdict.duplicated += sum(count - 1 for count in succeeded.values())
        return verdict

    def recovered_after(
        self,
        moment: datetime,
        timeout: float = 90,
        supervisor: Supervisor | None = None,
        process: str | None = None,
    ) -> float | None:
        """Seconds from `moment` until the restarted `process` (if any) is ready again and a new
        effect reached the ledger (work resumed); None when no work was left to resume."""
        end = time.monotonic() + timeout
        if supervisor is not None and process is not None:
            while not supervisor.is_ready(process) and time.monotonic() < end:
                time.sleep(0.05)
        ready_at = now()
        while time.monotonic() < end:
            first = self.ledger.first_effect_after(moment)
            if first is not None:
                return (max(first, ready_at) - moment).total_seconds()
            time.sleep(0.05)
        return None


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
