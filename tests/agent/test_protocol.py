"""Claim → run → report against a real HTTP server standing in for the control plane."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import Reject

from agents.agent import __version__
from agents.agent.actions import ActionResult
from agents.agent.client import AgentClient, ClaimUnavailable, InvalidJobSpec, JobSpec
from agents.agent.config import AgentConfig
from agents.agent.reporting import ReportBatcher
from agents.agent.runner import Runner, execute_job
from agents.agent.worker import TASK_NAME, Heartbeat, create_app

from .helpers import (
    FakeControlPlane,
    OutputCollector,
    Recorded,
    make_spec,
    pid_alive,
    wait_until,
)

TOKEN = "agent-token-123"


@pytest.fixture
def client(control_plane: FakeControlPlane) -> Iterator[AgentClient]:
    with AgentClient(
        control_plane.url, TOKEN, claim_retry_budget=1.0, report_retry_budget=2.0
    ) as agent_client:
        yield agent_client


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=3)


@pytest.fixture
def job_id() -> str:
    return str(uuid.uuid4())


def _spec(job_id: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease": "lease-abc",
        "execution_id": str(uuid.uuid4()),
        "node_id": "check",
        "attempt": 1,
        "workflow": "restart-service",
        "action": "shell",
        "params": {"command": command},
        "timeout_s": 30.0,
        "env": {},
        **extra,
    }


def _paths(plane: FakeControlPlane) -> list[str]:
    return [request.path for request in plane.requests]


def test_claim_409_drops_the_job_without_running_anything(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (409, {"detail": "claimed"}))

    assert execute_job(job_id, client, runner) is None

    assert _paths(control_plane) == [f"/api/agent/v1/jobs/{job_id}/claim"]
    claim = control_plane.requests[0]
    assert claim.headers["Authorization"] == f"Bearer {TOKEN}"
    assert claim.body == {}


def test_claim_404_drops_the_job(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    assert execute_job(job_id, client, runner) is None
    assert _paths(control_plane) == [f"/api/agent/v1/jobs/{job_id}/claim"]


def test_message_without_a_job_id_is_dropped_without_any_request(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    assert execute_job("../../register", client, runner) is None
    assert control_plane.requests == []


def test_claim_200_runs_and_reports_with_the_lease(
    control_plane: FakeControlPlane,
    client: AgentClient,
    runner: Runner,
    job_id: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    command = (
        f'echo "$SWITCHYARD_NODE_ID" > {marker}; echo hi; echo result=ok >> "$SWITCHYARD_OUTPUT"'
    )
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, command)))
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))
    output = OutputCollector()
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", output)

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    assert marker.read_text() == "check\n"
    assert _paths(control_plane) == [
        f"/api/agent/v1/jobs/{job_id}/claim",
        f"/api/agent/v1/jobs/{job_id}/output",
        f"/api/agent/v1/jobs/{job_id}/complete",
    ]
    streamed = control_plane.requests[1]
    assert streamed.headers["Authorization"] == f"Bearer {TOKEN}"
    assert streamed.body == {
        "lease": "lease-abc",
        "chunks": [{"seq": 1, "stream": "stdout", "data": "hi\n"}],
    }
    report = control_plane.requests[2]
    assert report.headers["Authorization"] == f"Bearer {TOKEN}"
    body = report.body
    assert body["lease"] == "lease-abc"
    assert body["status"] == "completed"
    assert body["exit_code"] == 0
    assert body["stdout"] == "hi\n"
    assert body["stderr"] == ""
    assert body["outputs"] == {"result": "ok"}
    assert body["error"] is None
    assert isinstance(body["duration_ms"], int)
    started = datetime.fromisoformat(body["started_at"])
    finished = datetime.fromisoformat(body["finished_at"])
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
    assert started <= finished
    assert runner.running_jobs() == []


def test_failed_job_is_reported_as_failed(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, "exit 4")))
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))

    execute_job(job_id, client, runner)

    body = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")[0].body
    assert (body["status"], body["exit_code"], body["error"]) == ("failed", 4, "exit code 4")


def test_complete_is_retried_after_503(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, "echo x")))
    control_plane.respond(
        f"/api/agent/v1/jobs/{job_id}/complete",
        (503, {"detail": "unavailable"}),
        (200, {"ok": True}),
    )

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    reports = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")
    assert len(reports) == 2
    assert reports[0].body == reports[1].body


def test_complete_409_is_not_retried(
    control_plane: FakeControlPlane, client: AgentClient, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (409, {"detail": "stale"}))

    assert client.complete(job_id, {"lease": "old"}) is False
    assert len(control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")) == 1


def test_claim_is_retried_on_server_errors(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(
        f"/api/agent/v1/jobs/{job_id}/claim",
        (500, {"detail": "boom"}),
        (502, "bad gateway"),
        (200, _spec(job_id, "true")),
    )
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    assert len(control_plane.calls(f"/api/agent/v1/jobs/{job_id}/claim")) == 3


def test_claim_gives_up_and_the_task_requeues_the_message(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (503, {"detail": "down"}))

    with pytest.raises(ClaimUnavailable):
        execute_job(job_id, client, runner)

    app = create_app(_agent_config(control_plane), client, runner, concurrency=1)
    with pytest.raises(Reject) as rejected:
        app.tasks[TASK_NAME](job_id)
    assert rejected.value.requeue is True
    assert not control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")


def test_celery_task_wraps_execute_job(
    control_plane: FakeControlPlane,
    client: AgentClient,
    runner: Runner,
    job_id: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    control_plane.respond(
        f"/api/agent/v1/jobs/{job_id}/claim",
        (200, _spec(job_id, f"touch {marker}")),
        (409, {"detail": "already claimed"}),
    )
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))
    task = create_app(_agent_config(control_plane), client, runner, concurrency=1).tasks[TASK_NAME]

    assert task(job_id) is None
    assert marker.exists()
    marker.unlink()
    assert task(job_id) is None, "a duplicate delivery must be dropped"
    assert not marker.exists()
    assert len(control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")) == 1


def test_invalid_claim_response_is_reported_as_failure(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    spec = _spec(job_id, "true", params="not an object")
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, spec))
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "failed"
    body = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")[0].body
    assert body["lease"] == "lease-abc"
    assert body["error"].startswith("invalid job spec")


def _agent_config(plane: FakeControlPlane) -> AgentConfig:
    return AgentConfig(
        url=plane.url, name="web-01", token=TOKEN, pools=["default"], broker_url="memory://"
    )


def test_heartbeat_reports_running_jobs_and_kills_cancelled_ones(
    control_plane: FakeControlPlane,
    client: AgentClient,
    runner: Runner,
    job_id: str,
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    command = f'sleep 60 & echo $! > "{pidfile}"; wait'
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, command)))
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))

    def heartbeat_reply(request: Recorded) -> tuple[int, Any]:
        return 200, {"ok": True, "cancel": list(request.body["running_jobs"])}

    control_plane.respond("/api/agent/v1/heartbeat", heartbeat_reply)
    results: list[ActionResult | None] = []
    worker = threading.Thread(target=lambda: results.append(execute_job(job_id, client, runner)))
    worker.start()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="job start")

    Heartbeat(client, runner, interval=10).beat()
    worker.join(timeout=10)

    assert not worker.is_alive()
    beat = control_plane.calls("/api/agent/v1/heartbeat")[0]
    assert beat.headers["Authorization"] == f"Bearer {TOKEN}"
    assert beat.body == {
        "running_jobs": [job_id],
        "version": __version__,
        "load": {"slots": 3, "busy": 1},
    }
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message=f"child {child} to die")
    report = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")[0].body
    assert (report["status"], report["error"]) == ("failed", "killed by the control plane")


def test_heartbeat_401_is_logged_loudly(
    control_plane: FakeControlPlane,
    client: AgentClient,
    runner: Runner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    control_plane.respond("/api/agent/v1/heartbeat", (401, {"detail": "Invalid token."}))

    with caplog.at_level(logging.WARNING, logger="switchyard.agent"):
        Heartbeat(client, runner, interval=10).beat()

    assert any(
        record.levelno == logging.CRITICAL and "Invalid token." in record.getMessage()
        for record in caplog.records
    )


def test_agent_that_cannot_heartbeat_kills_its_jobs(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, tmp_path: Path
) -> None:
    control_plane.respond("/api/agent/v1/heartbeat", (503, {"detail": "down"}))
    pidfile = tmp_path / "child.pid"
    spec_thread_results: list[ActionResult] = []
    spec = make_spec(f'sleep 60 & echo $! > "{pidfile}"; wait')
    thread = threading.Thread(target=lambda: spec_thread_results.append(runner.run(spec)))
    thread.start()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="job start")

    heartbeat = Heartbeat(client, runner, interval=10)
    heartbeat.beat()
    assert runner.running_jobs() == [spec.job_id], "one missed heartbeat must not kill jobs"
    heartbeat.last_success = time.monotonic() - 31
    heartbeat.beat()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert spec_thread_results[0].status == "failed"
    assert "no successful heartbeat" in (spec_thread_results[0].error or "")


def test_claim_response_fields_for_streaming_and_network(job_id: str) -> None:
    spec = JobSpec.from_claim(
        job_id,
        _spec(
            job_id,
            "true",
            output_limit_bytes=1234,
            network_allow=["127.0.0.0/8", "example.internal"],
            mask=["s3cret", ""],
        ),
    )
    assert spec.output_limit_bytes == 1234
    assert spec.network_allow == ("127.0.0.0/8", "example.internal")
    assert spec.mask == ("s3cret",)

    defaults = JobSpec.from_claim(job_id, _spec(job_id, "true"))
    assert defaults.output_limit_bytes == 10 * 1024 * 1024
    assert defaults.network_allow == ()


@pytest.mark.parametrize(
    "extra",
    [{"network_allow": "127.0.0.0/8"}, {"output_limit_bytes": "lots"}, {"output_limit_bytes": -1}],
)
def test_malformed_new_claim_fields_are_invalid(job_id: str, extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobSpec):
        JobSpec.from_claim(job_id, _spec(job_id, "true", **extra))


def test_report_takes_the_next_job_and_its_doorbell_is_skipped(
    control_plane: FakeControlPlane,
    client: AgentClient,
    runner: Runner,
    job_id: str,
    tmp_path: Path,
) -> None:
    """A report offers the freed slot; the job handed back runs in the same task, and its
    broker doorbell arriving later is dropped without any request."""
    second = str(uuid.uuid4())
    marker = tmp_path / "ran"
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, "true")))
    control_plane.respond(
        f"/api/agent/v1/jobs/{job_id}/complete",
        (
            200,
            {
                "job_id": job_id,
                "status": "completed",
                "applied": True,
                "next": _spec(second, f"echo $SWITCHYARD_JOB_ID > {marker}"),
            },
        ),
    )
    control_plane.respond(
        f"/api/agent/v1/jobs/{second}/complete",
        (200, {"job_id": second, "status": "completed", "applied": True, "next": None}),
    )
    control_plane.respond(f"/api/agent/v1/jobs/{second}/output", OutputCollector())

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    assert marker.read_text().strip() == second
    completes = [r for r in control_plane.requests if r.path.endswith("/complete")]
    assert [r.path for r in completes] == [
        f"/api/agent/v1/jobs/{job_id}/complete",
        f"/api/agent/v1/jobs/{second}/complete",
    ]
    assert all(r.body["accept_next"] is True for r in completes)
    assert completes[1].body["lease"] == "lease-abc"
    before = len(control_plane.requests)
    assert execute_job(second, client, runner) is None
    assert len(control_plane.requests) == before


def test_a_stopping_agent_takes_no_next_job(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, "true")))
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"applied": True}))
    runner.draining.set()

    assert execute_job(job_id, client, runner) is not None
    (complete,) = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")
    assert "accept_next" not in complete.body


def test_an_unusable_handed_over_job_is_reported_failed(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    second = str(uuid.uuid4())
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _spec(job_id, "true")))
    broken = _spec(second, "true", params="not an object")
    control_plane.respond(
        f"/api/agent/v1/jobs/{job_id}/complete", (200, {"applied": True, "next": broken})
    )
    control_plane.respond(f"/api/agent/v1/jobs/{second}/complete", (200, {"applied": True}))

    execute_job(job_id, client, runner)

    (report,) = control_plane.calls(f"/api/agent/v1/jobs/{second}/complete")
    assert report.body["status"] == "failed" and "invalid job spec" in report.body["error"]
    assert report.body["lease"] == "lease-abc"


def test_a_heartbeat_on_a_black_holed_connection_gives_up_within_its_interval(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    """A heartbeat request that never gets an answer must not block the heartbeat loop for the
    client's 30 s default: past three intervals the control plane fails the agent's jobs as
    lost, so the next heartbeat has to go out as soon as the network is back."""
    release = threading.Event()

    def never_answered(_request):
        release.wait(60)
        return 200, {"ok": True, "cancel": []}

    control_plane.respond("/api/agent/v1/heartbeat", never_answered)
    heartbeat = Heartbeat(client, runner, interval=0.5)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (heartbeat.beat(), done.set()), daemon=True)
    thread.start()
    try:
        assert done.wait(10), "the heartbeat waited for the black-holed answer"
    finally:
        release.set()
    assert len(control_plane.calls("/api/agent/v1/heartbeat")) == 1


def test_a_report_goes_to_the_batcher_with_its_execution(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, job_id: str
) -> None:
    """The batcher keeps a run's reports out of a second batch in flight by the run's id, so
    every report must carry the one its claim named."""
    spec = _spec(job_id, "true")
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, spec))
    control_plane.respond(
        "/api/agent/v1/reports",
        (200, {"results": [{"job_id": job_id, "status": "completed", "applied": True}]}),
    )
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", OutputCollector())
    given: list[str | None] = []

    class RecordingBatcher(ReportBatcher):
        def submit(self, job_id, report, *, accept_next, execution_id=None):
            given.append(execution_id)
            return super().submit(
                job_id, report, accept_next=accept_next, execution_id=execution_id
            )

    result = execute_job(job_id, client, runner, RecordingBatcher(client))

    assert result is not None and result.status == "completed"
    assert given == [spec["execution_id"]]
    [sent] = control_plane.calls("/api/agent/v1/reports")
    assert [r["job_id"] for r in sent.body["reports"]] == [job_id]
