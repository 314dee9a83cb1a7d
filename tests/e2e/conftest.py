"""The real stack for end-to-end tests: uvicorn (ASGI), the control Celery worker with beat, and
agent processes enrolled through the real CLI, against PostgreSQL and Redis.

The processes share pytest-django's test database (created once per session) and a dedicated
Redis database that is flushed first. Their logs are printed when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis
from django.conf import settings

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
E2E_REDIS_DB = int(os.environ.get("SWITCHYARD_E2E_REDIS_DB", "15"))
E2E_DATABASE = os.environ.get("SWITCHYARD_E2E_DATABASE", "switchyard_e2e")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_database() -> str:
    """A fresh PostgreSQL database for the stack, next to the configured one."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("end-to-end tests need PostgreSQL: set DATABASE_URL (`make test` does)")
    name = E2E_DATABASE
    params = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": db.get("PORT") or 5432,
        "user": db.get("USER") or "postgres",
        "password": db.get("PASSWORD") or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    auth = quote(params["user"]) + (":" + quote(params["password"]) if params["password"] else "")
    return f"postgres://{auth}@{params['host']}:{params['port']}/{name}"


def drop_database() -> None:
    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname="postgres",
        autocommit=True,
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{E2E_DATABASE}" WITH (FORCE)')


def redis_url() -> str:
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{E2E_REDIS_DB}"))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


@dataclass
class Stack:
    url: str
    token: str
    env: dict[str, str]
    workdir: Path
    redis_url: str
    enrollment_token: str = ""
    processes: list[Process] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=30
        )

    def spawn(self, name: str, argv: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            argv,
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_agent(self, name: str, pools: list[str], concurrency: int = 4) -> Process:
        """Enroll an agent through the real CLI and run it."""
        config = self.workdir / f"{name}.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "agents.agent",
                "register",
                "--url",
                self.url,
                "--enrollment-token",
                self.enrollment_token,
                "--name",
                name,
                "--config",
                str(config),
                *[arg for pool in pools for arg in ("--pool", pool)],
            ],
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        assert oct(config.stat().st_mode & 0o777) == "0o600"
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
            wait_until(
                lambda: any(
                    a["name"] == name and a["status"] == "online"
                    for a in client.get("/api/v1/agents/").json()["results"]
                ),
                timeout=60,
                what=f"agent {name} online",
            )
        return process

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (exit {p.popen.poll()}) -----\n"
            + p.log.read_text(errors="replace")[-6000:]
            for p in self.processes
        )


def manage(env: dict[str, str], *args: str) -> str:
    """Run a real management command against the stack's database; return its stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stack")
    url_redis = redis_url()
    redis.Redis.from_url(url_redis).flushdb()
    port = free_port()
    env = os.environ.copy()
    env.update(
        DATABASE_URL=create_database(),
        REDIS_URL=url_redis,
        DEBUG="1",
        SWITCHYARD_VAR_DIR=str(workdir),
        SWITCHYARD_BASE_URL=f"http://127.0.0.1:{port}",
        SWITCHYARD_SWEEP_INTERVAL="0.5",
        SWITCHYARD_REPUBLISH_PENDING_AFTER="1",
        SWITCHYARD_HEARTBEAT_INTERVAL="1",
        SWITCHYARD_JOB_TIMEOUT_GRACE="5",
        PYTHONUNBUFFERED="1",
        DJANGO_SUPERUSER_PASSWORD="e2e-password-1",
    )
    manage(env, "migrate", "--noinput")
    manage(env, "createsuperuser", "--noinput", "--username", "e2e-admin", "--email", "e2e@x.test")
    token = manage(env, "issue_token", "e2e-admin")
    enrollment = manage(env, "create_enrollment_token", "--description", "e2e")
    stack = Stack(
        url=f"http://127.0.0.1:{port}", token=token, env=env, workdir=workdir, redis_url=url_redis
    )
    stack.enrollment_token = enrollment
    try:
        stack.spawn(
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
            ],
        )
        stack.spawn(
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
                str(workdir / "beat-schedule"),
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

        def web_up() -> bool:
            try:
                return httpx.get(f"{stack.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(web_up, timeout=60, what="web /readyz")
        stack.start_agent("e2e-agent", ["default", "e2e"])
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for process in reversed(stack.processes):
            process.stop()
        drop_database()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and stack is not None:
        report.sections.append(("stack logs", stack.logs()))
