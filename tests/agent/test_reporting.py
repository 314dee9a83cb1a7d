"""Group commit of reports: what finishes while a report is in flight goes out in one request."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from agents.agent.client import AgentClient, BatchedReport
from agents.agent.reporting import ReportBatcher
from agents.agent.runner import Runner

from .helpers import FakeControlPlane, Recorded, wait_until


def spec_for(job_id: str) -> dict:
    return {"job_id": job_id, "lease": str(uuid.uuid4()), "action": "shell", "params": {}}


def answer_each(request: Recorded) -> tuple[int, dict]:
    """Like the control plane: one result per report, in order; each offered slot gets a job."""
    results = []
    for sent in request.body["reports"]:
        nxt = spec_for(f"next-{sent['job_id']}") if sent["accept_next"] else None
        results.append(
            {"job_id": sent["job_id"], "status": "completed", "applied": True} | {"next": nxt}
        )
    return 200, {"results": results}


def report(lease: str = "") -> dict:
    return {"lease": lease or str(uuid.uuid4()), "status": "completed", "exit_code": 0}


def test_reports_finishing_during_a_request_go_out_together(control_plane: FakeControlPlane):
    release = threading.Event()

    def held_then_answered(request: Recorded) -> tuple[int, dict]:
        release.wait(10)
        return answer_each(request)

    control_plane.respond("/api/agent/v1/reports", held_then_answered, answer_each)
    batcher = ReportBatcher(AgentClient(control_plane.url, "token"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(batcher.submit, "a", report(), accept_next=True)
        wait_until(lambda: control_plane.calls("/api/agent/v1/reports"), message="first request")
        later = {
            job_id: pool.submit(batcher.submit, job_id, report(), accept_next=job_id != "d")
            for job_id in "bcd"
        }
        wait_until(lambda: batcher.waiting() == 3, message="three reports queued")
        release.set()
        replies = {"a": first.result(10)} | {k: f.result(10) for k, f in later.items()}

    calls = control_plane.calls("/api/agent/v1/reports")
    assert [[r["job_id"] for r in call.body["reports"]] for call in calls] == [
        ["a"],
        ["b", "c", "d"],
    ]
    assert all(replies.values()), "every report was accepted"
    assert {k: r.next.job_id if r.next else None for k, r in replies.items()} == {
        "a": "next-a",
        "b": "next-b",
        "c": "next-c",
        "d": None,
    }
    assert batcher.waiting() == 0


def test_refused_reports_get_falsy_replies_the_others_not(control_plane: FakeControlPlane):
    control_plane.respond(
        "/api/agent/v1/reports",
        (
            200,
            {
                "results": [
                    {"job_id": "a", "status": "completed", "applied": True, "next": None},
                    {"job_id": "b", "error": {"status": 409, "detail": "lease is stale"}},
                ]
            },
        ),
    )
    client = AgentClient(control_plane.url, "token")
    replies = client.complete_many(
        [BatchedReport("a", report(), True), BatchedReport("b", report(), True)]
    )
    assert [bool(r) for r in replies] == [True, False]


def test_a_server_without_the_batch_endpoint_gets_one_report_per_job(
    control_plane: FakeControlPlane,
):
    control_plane.respond("/api/agent/v1/reports", (404, {"detail": "Not found."}))
    for job_id in ("a", "b"):
        control_plane.respond(
            f"/api/agent/v1/jobs/{job_id}/complete",
            (200, {"job_id": job_id, "status": "completed", "applied": True, "next": None}),
        )
    batcher = ReportBatcher(AgentClient(control_plane.url, "token"))

    assert batcher.submit("a", report(), accept_next=True)
    assert batcher.submit("b", report(), accept_next=False)

    assert len(control_plane.calls("/api/agent/v1/reports")) == 1, "asked once, then remembered"
    single = control_plane.calls("/api/agent/v1/jobs/a/complete")[0].body
    assert single["accept_next"] is True
    assert "accept_next" not in control_plane.calls("/api/agent/v1/jobs/b/complete")[0].body


def test_a_rejected_batch_is_resent_report_by_report(control_plane: FakeControlPlane):
    """A 400 for the whole batch must not lose the good reports in it."""
    control_plane.respond(
        "/api/agent/v1/reports",
        (
            400,
            {"detail": "Invalid input.", "errors": [{"path": "reports[1].status", "message": "x"}]},
        ),
    )
    control_plane.respond(
        "/api/agent/v1/jobs/a/complete",
        (200, {"job_id": "a", "status": "completed", "applied": True, "next": None}),
    )
    control_plane.respond("/api/agent/v1/jobs/b/complete", (400, {"detail": "Invalid input."}))
    replies = AgentClient(control_plane.url, "token").complete_many(
        [BatchedReport("a", report(), False), BatchedReport("b", report(), False)]
    )
    assert [bool(r) for r in replies] == [True, False]


def test_a_batch_is_retried_whole_after_a_server_error(control_plane: FakeControlPlane):
    control_plane.respond(
        "/api/agent/v1/reports",
        (503, {"detail": "The database is unavailable; retry later."}),
        answer_each,
    )
    batcher = ReportBatcher(AgentClient(control_plane.url, "token"))
    reply = batcher.submit("a", report(), accept_next=True)
    assert reply and reply.next.job_id == "next-a"
    bodies = [call.body for call in control_plane.calls("/api/agent/v1/reports")]
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_a_report_lingers_for_the_agents_other_running_jobs(control_plane: FakeControlPlane):
    """Three awaited jobs running: the first report waits for the other two (up to the linger)
    and all three go in one request; with no other job awaited nothing waits, even with jobs
    still running (`awaited` leaves out jobs running for long: see `Runner.started_within`)."""
    control_plane.respond("/api/agent/v1/reports", answer_each)
    awaited = [{"a", "b", "c"}]
    batcher = ReportBatcher(
        AgentClient(control_plane.url, "token"), awaited=lambda: awaited[0], linger=60
    )
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(batcher.submit, "a", report(), accept_next=False)
        wait_until(lambda: batcher.waiting() == 1, message="the first report to linger")
        assert not control_plane.calls("/api/agent/v1/reports")
        rest = [pool.submit(batcher.submit, j, report(), accept_next=False) for j in "bc"]
        assert first.result(10) and all(f.result(10) for f in rest)
    calls = control_plane.calls("/api/agent/v1/reports")
    assert [[r["job_id"] for r in call.body["reports"]] for call in calls] == [["a", "b", "c"]]

    awaited[0] = {"d"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(batcher.submit, "d", report(), accept_next=False).result(10)
    assert len(control_plane.calls("/api/agent/v1/reports")) == 2


def test_only_recently_started_jobs_are_awaited():
    """A job running for longer than the window is not about to finish with the reporting
    slot: a report does not linger for it."""
    runner = Runner(slots=2)
    try:
        with runner.track("long") as long_job, runner.track("short"):
            long_job.started -= 1.0
            assert runner.started_within(0.5) == {"short"}
            assert runner.running_jobs() == ["long", "short"]
        assert runner.started_within(0.5) == set()
    finally:
        runner.close()


def test_reports_of_other_executions_go_out_beside_a_batch_in_flight(
    control_plane: FakeControlPlane,
):
    """A second batch goes at once when it shares no execution with the one in flight; a report
    of an execution in flight, or a third batch, waits for an answer."""
    gates = {"a": threading.Event(), "b": threading.Event()}

    def held_until_released(request: Recorded) -> tuple[int, dict]:
        for sent in request.body["reports"]:
            if sent["job_id"] in gates:
                gates[sent["job_id"]].wait(10)
        return answer_each(request)

    control_plane.respond("/api/agent/v1/reports", held_until_released)
    batcher = ReportBatcher(AgentClient(control_plane.url, "token"))

    def sent() -> list[list[str]]:
        calls = control_plane.calls("/api/agent/v1/reports")
        return [[r["job_id"] for r in call.body["reports"]] for call in calls]

    with ThreadPoolExecutor(max_workers=4) as pool:
        a = pool.submit(batcher.submit, "a", report(), accept_next=True, execution_id="x")
        wait_until(lambda: len(sent()) == 1, message="x's batch in flight")
        b = pool.submit(batcher.submit, "b", report(), accept_next=True, execution_id="y")
        wait_until(lambda: len(sent()) == 2, message="y's batch beside it")
        same = pool.submit(batcher.submit, "a2", report(), accept_next=True, execution_id="x")
        third = pool.submit(batcher.submit, "c", report(), accept_next=True, execution_id="z")
        wait_until(lambda: batcher.waiting() == 2, message="x's and z's reports to wait")
        assert batcher.in_flight() == 2 and len(sent()) == 2

        gates["b"].set()
        assert b.result(10).next.job_id == "next-b"
        assert third.result(10).next.job_id == "next-c", "z goes once y's batch has landed"
        assert not same.done(), "x's second report waits for x's first batch"

        gates["a"].set()
        assert a.result(10) and same.result(10).next.job_id == "next-a2"

    assert sent() == [["a"], ["b"], ["c"], ["a2"]]
    assert batcher.waiting() == 0 and batcher.in_flight() == 0
