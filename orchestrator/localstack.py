"""A complete Switchyard stack on this machine, for end-to-end tests and benchmarks.

Creates a dedicated PostgreSQL database (migrated and seeded through the real management
commands), flushes a dedicated Redis database, and starts real processes: uvicorn serving the
ASGI app, the control Celery worker with beat, and agents enrolled through `switchyard-agent
register`. Nothing here imports Django, so callers choose how they configure it.

Scaled out (`start(web_processes=2, control_workers=2)`), it runs several uvicorn processes on
their own ports and several control workers, each with its own beat scheduler; `client()` then
spreads requests over every web process in turn and agents register with them in turn.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll `probe` until truthy (returning its value) or raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class Postgres:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Postgres:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
        )

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            dbname="postgres",
            autocommit=True,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
        )

    def recreate(self, name: str) -> str:
        """Drop and create database `name`; return its URL."""
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        auth = quote(self.user) + (":" + quote(self.password) if self.password else "")
        return f"postgres://{auth}@{self.host}:{self.port}/{name}"

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_url_with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


class RoundRobinTransport(httpx.BaseTransport):
    """Sends each request to the next of several servers (base URLs) in turn: the way a load
    balancer without sticky sessions spreads one client's requests over web replicas."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one URL")
        self.targets = [httpx.URL(url) for url in urls]
        self.turn = 0
        self.lock = threading.Lock()
        self.inner = httpx.HTTPTransport()

    def next_target(self) -> httpx.URL:
        with self.lock:
            target = self.targets[self.turn % len(self.targets)]
            self.turn += 1
        return target

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.next_target()
        request.url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port
        )
        request.headers["Host"] = target.netloc.decode("ascii")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log: Path
    url: str | None = None  # where a web process serves

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


@dataclass
class LocalStack:
    """Real processes sharing one PostgreSQL database and one Redis database."""

    workdir: Path
    database: str
    postgres: Postgres
    redis_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    token: str = ""
    enrollment_token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    agents_started: int = 0

    def start(
        self, *, web_workers: int = 1, web_processes: int = 1, control_workers: int = 1
    ) -> LocalStack:
        """Migrate and seed the database, then start `web_processes` uvicorn servers (each with
        `web_workers` workers, on its own port; `url` is the first) and `control_workers`
        control workers, each with its own beat scheduler."""
        if web_processes < 1 or control_workers < 1:
            raise ValueError("a stack needs at least one web process and one control worker")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.urls = [self.url]
        redis.Redis.from_url(self.redis_url).flushdb()
        self.env = (
            os.environ.copy()
            | {
                "DATABASE_URL": self.postgres.recreate(self.database),
                "REDIS_URL": self.redis_url,
                "DEBUG": "1",
                "SWITCHYARD_VAR_DIR": str(self.workdir),
                "SWITCHYARD_BASE_URL": self.url,
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SUPERUSER_PASSWORD": "local-stack-password-1",
            }
            | self.extra_env
        )
        self.manage("migrate", "--noinput")
        self.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "a@x.test")
        self.token = self.manage("issue_token", "admin")
        self.enrollment_token = self.manage("create_enrollment_token", "--description", "stack")
        self.start_web("web", port=port, workers=web_workers)
        for n in range(2, web_processes + 1):
            self.start_web(f"web-{n}", workers=web_workers, wait=False)
        self.start_control("control")
        for n in range(2, control_workers + 1):
            self.start_control(f"control-{n}")
        for url in self.urls:
            wait_for(lambda url=url: self.ready(url), timeout=60, what=f"{url}/readyz")
        return self

    def start_web(
        self, name: str, *, port: int | None = None, workers: int = 1, wait: bool = True
    ) -> ManagedProcess:
        """Start one more uvicorn process serving the stack on its own port (its `url` is also
        appended to `urls`, so `client()` and agents started later use it too)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        process = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "orchestrator.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--workers",
                str(workers),
            ],
        )
        process.url = url
        if url not in self.urls:
            self.urls.append(url)
        if wait:
            wait_for(lambda: self.ready(url), timeout=60, what=f"{url}/readyz")
        return process

    def start_control(self, name: str) -> ManagedProcess:
        """Start one more control worker with its own embedded beat scheduler."""
        return self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "orchestrator.celery_app",
                "worker",
                "-Q",
                "control",
                "--beat",
                "--schedule",
                str(self.workdir / f"beat-schedule-{name}"),
                "--pool",
                "threads",
                "-c",
                "2",
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
        )

    def stop_process(self, process: ManagedProcess) -> None:
        """Stop one process of the stack (a web process also leaves `urls`)."""
        process.stop()
        if process in self.processes:
            self.processes.remove(process)
        if process.url in self.urls and len(self.urls) > 1:
            self.urls.remove(process.url)

    def ready(self, url: str | None = None) -> bool:
        try:
            return httpx.get(f"{url or self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def manage(self, *args: str) -> str:
        """Run a real management command against the stack's database; return its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def client(self, token: str | None = None) -> httpx.Client:
        """An API client (the admin's token unless `token`) whose requests go to every web
        process in turn."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token or self.token}"},
            timeout=30,
            transport=RoundRobinTransport(self.urls or [self.url]),
        )

    def spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                argv,
                env=self.env,
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = ManagedProcess(name, popen, log)
        self.processes.append(process)
        return process

    def start_agent(
        self,
        name: str,
        pools: list[str],
        concurrency: int = 4,
        labels: dict[str, str] | None = None,
        url: str | None = None,
    ) -> ManagedProcess:
        """Enroll an agent through the real CLI, run it, and wait until it is online. It talks
        to `url`, by default the web processes in turn (one per agent started)."""
        config = self.workdir / f"{name}.json"
        if url is None:
            targets = self.urls or [self.url]
            url = targets[self.agents_started % len(targets)]
        self.agents_started += 1
        registered = subprocess.run(
            [
                sys.executable,
                "-m",
                "agents.agent",
                "register",
                "--url",
                url,
                "--enrollment-token",
                self.enrollment_token,
                "--name",
                name,
                "--config",
                str(config),
                *[arg for pool in pools for arg in ("--pool", pool)],
                *[arg for k, v in (labels or {}).items() for arg in ("--label", f"{k}={v}")],
            ],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if registered.returncode != 0:
            raise RuntimeError(f"registering {name} failed: {registered.stderr}")
        process = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "agents.agent",
                "run",
                "--config",
                str(config),
                "--concurrency",
                str(concurrency),
            ],
        )
        with self.client() as client:

            def online() -> bool:
                agents = client.get("/api/v1/agents/").json()["results"]
                return any(a["name"] == name and a["status"] == "online" for a in agents)

            wait_for(online, timeout=60, what=f"agent {name} online")
        return process

    def logs(self, tail: int = 6000) -> str:
        return "\n".join(
            f"----- {p.name} (exit {p.popen.poll()}) -----\n"
            + p.log.read_text(errors="replace")[-tail:]
            for p in self.processes
        )

    def stop(self, drop_database: bool = True) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes = []
        if drop_database:
            self.postgres.drop(self.database)
