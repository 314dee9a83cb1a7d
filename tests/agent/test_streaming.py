"""Live output streaming (``POST .../output``) against a real HTTP server and real jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.agent.actions import ActionResult
from agents.agent.client import AgentClient, OutputReply
from agents.agent.runner import Runner, execute_job
from agents.agent.streaming import CHUNK_BYTES, OutputStreamer
from agents.agent.worker import Heartbeat

from .helpers import FakeControlPlane, OutputCollector, Recorded, pid_alive, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "agent-token"


@pytest.fixture
def client(control_plane: FakeControlPlane) -> Iterator[AgentClient]:
    with AgentClient(
        control_plane.url, TOKEN, claim_retry_budget=1.0, report_retry_budget=2.0
    ) as agent_client:
        yield agent_client


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def _claim(job_id: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "lease": "lease-1",
        "action": "shell",
        "params": {"command": command},
        "timeout_s": 60,
        **extra,
    }


def _job(
    plane: FakeControlPlane, command: str, output: Any = None, **extra: Any
) -> tuple[str, OutputCollector | Any]:
    job_id = str(uuid.uuid4())
    plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, _claim(job_id, command, **extra)))
    plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))
    output = OutputCollector() if output is None else output
    plane.respond(f"/api/agent/v1/jobs/{job_id}/output", output)
    return job_id, output


def _report(plane: FakeControlPlane, job_id: str) -> dict[str, Any]:
    (report,) = plane.calls(f"/api/agent/v1/jobs/{job_id}/complete")
    return report.body


def test_chunks_are_sequenced_across_streams_and_precede_the_report(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    command = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.1; done"
    job_id, output = _job(control_plane, command)

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    assert output.seqs() == list(range(1, len(output.seqs()) + 1))
    assert output.text("stdout") == "out1\nout2\nout3\n"
    assert output.text("stderr") == "err1\nerr2\nerr3\n"
    paths = [request.path for request in control_plane.requests]
    assert paths[-1].endswith("/complete")
    assert all(path.endswith("/output") for path in paths[1:-1])
    bodies = [r.body for r in control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")]
    assert all(body["lease"] == "lease-1" for body in bodies)
    assert _report(control_plane, job_id)["stdout"] == "out1\nout2\nout3\n", "tail still sent"


def test_small_writes_are_batched_at_most_every_250ms(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    command = "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.025; done"
    job_id, output = _job(control_plane, command)

    started = time.monotonic()
    execute_job(job_id, client, runner)
    elapsed = time.monotonic() - started

    assert output.text() == "".join(f"line {i}\n" for i in range(40))
    assert output.requests <= elapsed / 0.25 + 2, (output.requests, elapsed)
    assert len(output.chunks) < 40, "consecutive writes to a stream share a chunk"


def test_chunks_are_at_most_64k_and_never_split_a_character(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    # 3-byte characters, written in pieces of odd sizes so reads end mid-character.
    code = (
        "import sys\n"
        "for _ in range(40):\n"
        "    sys.stdout.buffer.write(('€' * 5000).encode()[:14999]); sys.stdout.flush()"
    )
    command = f'{sys.executable} -c "{code}"'
    job_id, output = _job(control_plane, command)

    execute_job(job_id, client, runner)

    expected = (("€" * 5000).encode()[:14999] * 40).decode("utf-8", errors="replace")
    assert output.text() == expected
    for chunk in output.chunks:
        assert len(chunk["data"].encode()) <= CHUNK_BYTES
    assert max(len(chunk["data"].encode()) for chunk in output.chunks) > 60_000


def test_secrets_are_masked_even_across_writes_and_in_encoded_forms(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    secret = "p@ss w0rd!"
    command = (
        "printf 'some text before the secret: pass=p@ss'; sleep 0.4; printf ' w0rd!\\n'; "
        "printf 'b64=%s\\n' \"$(printf 'user:p@ss w0rd!' | base64)\"; "
        "echo 'url=p%40ss%20w0rd%21 plus=p%40ss+w0rd%21'; printf '\\033[31mred\\033[0m\\n'"
    )
    job_id, output = _job(control_plane, command, mask=[secret])

    execute_job(job_id, client, runner)

    streamed = output.text("stdout")
    lines = streamed.splitlines()
    assert lines[0] == "some text before the secret: pass=***"
    assert lines[1].startswith("b64=dXNlcjp") and "***" in lines[1]
    assert lines[2] == "url=*** plus=***"
    assert lines[3] == "\x1b[31mred\x1b[0m", "ANSI sequences are passed through"
    first = control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")[0].body["chunks"]
    assert first[0]["data"].startswith("some text"), "flushed before the secret was complete"
    assert "p@" not in first[0]["data"], "a possible secret prefix is held back"
    report = _report(control_plane, job_id)
    assert report["stdout"] == streamed


def test_output_limit_truncates_the_stream_but_the_report_keeps_the_tail(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    command = "head -c 300000 /dev/zero | tr '\\0' a; echo; echo the-end"
    job_id, output = _job(control_plane, command, output_limit_bytes=100_000)

    execute_job(job_id, client, runner)

    *data, marker = output.chunks
    assert sum(len(chunk["data"]) for chunk in data) == 100_000
    assert marker["data"] == "[switchyard: output truncated after 100000 bytes]"
    assert output.seqs() == list(range(1, len(output.chunks) + 1))
    assert _report(control_plane, job_id)["stdout"].endswith("aaa\nthe-end\n")


def test_failed_posts_are_retried_with_the_same_sequence_numbers(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    collector = OutputCollector()
    failures = {"left": 2}

    def flaky(request: Recorded) -> tuple[int, Any]:
        if failures["left"]:
            failures["left"] -= 1
            return 503, {"detail": "busy"}
        return collector(request)

    job_id, _ = _job(control_plane, "echo one; sleep 0.3; echo two", output=flaky)

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    attempts = [r.body for r in control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")]
    assert attempts[0]["chunks"] == attempts[1]["chunks"] == attempts[2]["chunks"][:1]
    assert collector.text() == "one\ntwo\n"
    assert collector.seqs() == [1, 2]


def test_pending_output_is_bounded_while_the_control_plane_is_down(
    control_plane: FakeControlPlane, client: AgentClient
) -> None:
    job_id = str(uuid.uuid4())
    collector = OutputCollector()
    down = threading.Event()
    down.set()

    def reply(request: Recorded) -> tuple[int, Any]:
        return (503, {"detail": "down"}) if down.is_set() else collector(request)

    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", reply)
    streamer = OutputStreamer(
        lambda chunks: client.post_output(job_id, "lease-1", chunks),
        lambda reason: None,
        max_pending=1024 * 1024,
    )
    streamer.start()
    total = 3 * 1024 * 1024
    piece = b"x" * 32 * 1024
    for _ in range(total // len(piece)):
        streamer.write("stdout", piece)
    streamer.write("stdout", b"LAST\n")
    wait_until(lambda: control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output"), 5, "a post")
    down.clear()
    streamer.close()

    markers = [c for c in collector.chunks if c["data"].startswith("[switchyard: ")]
    assert len(markers) == 1
    dropped = int(markers[0]["data"].split()[1])
    assert markers[0]["data"] == f"[switchyard: {dropped} bytes of live output dropped]"
    received = sum(len(c["data"]) for c in collector.chunks if c not in markers)
    assert received + dropped == total + len("LAST\n")
    assert received <= 1024 * 1024 + 512 * 1024, "pending + one in-flight batch at most"
    assert collector.text().endswith("LAST\n"), "the newest output survives"
    assert collector.seqs() == list(range(1, len(collector.chunks) + 1))


def test_409_on_output_stops_streaming_and_kills_the_job(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    command = f'echo started; sleep 60 & echo $! > "{pidfile}"; wait'
    job_id, _ = _job(control_plane, command, output=(409, {"detail": "stale lease"}))

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "failed"
    assert result.error is not None and "lease is stale" in result.error
    assert len(control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")) == 1
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message="child to die")


def test_permanent_output_errors_stop_streaming_without_delaying_the_report(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner
) -> None:
    job_id, _ = _job(control_plane, "echo a; sleep 0.4; echo b", output=(404, {"detail": "no"}))

    result = execute_job(job_id, client, runner)

    assert result is not None and result.status == "completed"
    assert len(control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")) == 1
    assert _report(control_plane, job_id)["stdout"] == "a\nb\n"


def _stubborn_job(tmp_path: Path) -> tuple[Path, str]:
    """A job whose whole group ignores SIGTERM, so only SIGKILL after the grace ends it."""
    pidfile = tmp_path / "pid"
    command = f"trap '' TERM; echo started; sleep 60 & echo $! > \"{pidfile}\"; wait; wait"
    return pidfile, command


def test_cancel_in_the_output_reply_kills_the_job_within_2s(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, tmp_path: Path
) -> None:
    pidfile, command = _stubborn_job(tmp_path)
    job_id, output = _job(control_plane, command, output=OutputCollector(cancel=True))

    result = execute_job(job_id, client, runner)

    assert result is not None
    assert (result.status, result.error) == ("failed", "killed by the control plane")
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message="child to die")
    assert output.first_reply_at is not None
    assert time.monotonic() - output.first_reply_at < 2.5
    report = _report(control_plane, job_id)
    assert (report["status"], report["error"]) == ("failed", "killed by the control plane")


def test_heartbeat_cancel_kills_a_stubborn_job_within_2s(
    control_plane: FakeControlPlane, client: AgentClient, runner: Runner, tmp_path: Path
) -> None:
    pidfile, command = _stubborn_job(tmp_path)
    job_id, _ = _job(control_plane, command)
    control_plane.respond("/api/agent/v1/heartbeat", (200, {"cancel": [job_id]}))
    results: list[ActionResult | None] = []
    worker = threading.Thread(target=lambda: results.append(execute_job(job_id, client, runner)))
    worker.start()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="job start")
    child = int(pidfile.read_text())

    Heartbeat(client, runner, interval=10).beat()
    asked = time.monotonic()
    wait_until(lambda: not pid_alive(child), timeout=5, message="child to die")
    killed_after = time.monotonic() - asked
    worker.join(timeout=10)

    assert killed_after < 2.0
    assert results[0] is not None
    assert (results[0].status, results[0].error) == ("failed", "killed by the control plane")


def test_a_100mb_job_keeps_the_agent_memory_bounded(control_plane: FakeControlPlane) -> None:
    """The agent runs in its own process so that its peak RSS can be measured honestly."""
    warmup, big = str(uuid.uuid4()), str(uuid.uuid4())
    counts = {warmup: OutputCollector(keep_data=False), big: OutputCollector(keep_data=False)}
    commands = {
        warmup: "head -c 3000000 /dev/zero | tr '\\0' a",
        big: "head -c 100000000 /dev/zero | tr '\\0' a",
    }
    for job_id in (warmup, big):
        claim = _claim(job_id, commands[job_id], output_limit_bytes=200_000_000)
        control_plane.respond(f"/api/agent/v1/jobs/{job_id}/claim", (200, claim))
        control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", counts[job_id], record=False)
        control_plane.respond(f"/api/agent/v1/jobs/{job_id}/complete", (200, {"ok": True}))

    probe = subprocess.run(
        [sys.executable, "-m", "tests.agent.memprobe", control_plane.url, warmup, big],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert probe.returncode == 0, probe.stderr[-3000:]
    peaks = json.loads(probe.stdout.strip().splitlines()[-1])
    growth_mib = (peaks["after_kb"] - peaks["before_kb"]) / 1024
    # Bounded, not proportional to the 100 MB printed: ~11-13 MiB alone (4 MiB pending, two
    # 1 MiB tails, the report), 20.3 once on a loaded CI machine (more reads in flight and
    # allocator arenas); keeping the output would add ~100 MiB.
    assert growth_mib < 32, peaks
    report = _report(control_plane, big)
    assert report["status"] == "completed"
    assert len(report["stdout"]) < 1024 * 1024 + 200
    streamed = counts[big]
    dropped = sum(int(chunk["data"].split()[1]) for chunk in streamed.chunks)
    assert all("live output dropped" in chunk["data"] for chunk in streamed.chunks)
    assert streamed.bytes + dropped == 100_000_000


def test_many_tiny_chunks_are_split_into_requests_the_server_accepts(
    control_plane: FakeControlPlane, client: AgentClient
) -> None:
    job_id = str(uuid.uuid4())
    collector = OutputCollector()
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", collector)
    streamer = OutputStreamer(
        lambda chunks: client.post_output(job_id, "lease-1", chunks), lambda reason: None
    )
    for index in range(1200):
        streamer.write("stdout" if index % 2 else "stderr", f"{index}\n".encode())
    streamer.close()  # never started: close() alone flushes everything

    sizes = [
        len(r.body["chunks"]) for r in control_plane.calls(f"/api/agent/v1/jobs/{job_id}/output")
    ]
    assert max(sizes) <= 500 and sum(sizes) == 1200
    assert collector.text("stdout") == "".join(f"{i}\n" for i in range(1, 1200, 2))
    assert collector.seqs() == list(range(1, 1201))


def test_tiny_chunks_count_against_the_pending_bound(
    control_plane: FakeControlPlane, client: AgentClient
) -> None:
    job_id = str(uuid.uuid4())
    collector = OutputCollector()
    control_plane.respond(f"/api/agent/v1/jobs/{job_id}/output", collector)
    streamer = OutputStreamer(
        lambda chunks: client.post_output(job_id, "lease-1", chunks),
        lambda reason: None,
        max_pending=64 * 1024,
    )
    for index in range(20_000):
        streamer.write("stdout" if index % 2 else "stderr", b"x")
    streamer.close()

    dropped = [c for c in collector.chunks if c["data"].startswith("[switchyard: ")]
    assert len(dropped) == 1
    kept = len(collector.chunks) - 1
    assert kept <= 64 * 1024 // 129 + 1, "each queued chunk costs its overhead too"
    assert kept + int(dropped[0]["data"].split()[1]) == 20_000


def test_a_job_without_output_starts_no_flusher_and_sends_nothing() -> None:
    posts: list[list[dict[str, object]]] = []

    def post(batch: list[dict[str, object]]) -> OutputReply:
        posts.append(batch)
        return OutputReply()

    def flushers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "switchyard-output-quiet"]

    quiet = OutputStreamer(post, lambda reason: None, name="quiet")
    quiet.start()
    assert flushers() == []
    quiet.close()
    assert (flushers(), posts) == ([], [])

    chatty = OutputStreamer(post, lambda reason: None, name="quiet", flush_interval=60)
    chatty.start()
    chatty.write("stdout", b"hello\n")
    assert flushers() == ["switchyard-output-quiet"]
    chatty.close()
    assert flushers() == []
    assert [[(c["stream"], c["data"]) for c in batch] for batch in posts] == [
        [("stdout", "hello\n")]
    ]
