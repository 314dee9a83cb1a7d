"""A complete Switchyard stack on this machine, for end-to-end tests and benchmarks.

Creates a dedicated PostgreSQL database (migrated and seeded through the real management
commands), flushes a dedicated Redis database, and starts real processes: uvicorn serving the
ASGI app, the control Celery worker with beat, and agents enrolled through `switchyard-agent
register`. Nothing here imports Django, so callers choose how they configure it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log: Path

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

    def start(self, *, web_workers: int = 1) -> LocalStack:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
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
        self.spawn(
            "web",
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
                str(web_workers),
            ],
        )
        self.spawn(
            "control",
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
                str(self.workdir / "beat-schedule"),
                "--pool",
                "threads",
                "-c",
                "2",
                "-n",
                "control@%h",
                "--loglevel",
                "INFO",
            ],
        )
        wait_for(self.ready, timeout=60, what="web /readyz")
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
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

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=30
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
        """Enroll an agent through the real CLI, run it, and wait until it is online; `url` is the
        control plane's address as this agent sees it (default: the web's own)."""
        config = self.workdir / f"{name}.json"
        registered = subprocess.run(
            [
                sys.executable,
                "-m",
                "agents.agent",
                "register",
                "--url",
                url or self.url,
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
