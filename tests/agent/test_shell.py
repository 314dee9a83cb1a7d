"""The shell action and the runner, with real subprocesses."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.agent.actions import ACTIONS, NULL_SINK, ActionResult
from agents.agent.actions.shell import ProcessWatch, start_process
from agents.agent.runner import Runner, parse_output_file
from agents.agent.workspace import LOCK_NAME, default_work_root

from .helpers import make_spec, pid_alive, wait_until


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def test_success_captures_stdout_stderr_and_exit_code(runner: Runner) -> None:
    result = runner.run(make_spec("echo hello; echo oops >&2"))

    assert result.status == "completed"
    assert result.exit_code == 0
    assert result.stdout == "hello\n"
    assert result.stderr == "oops\n"
    assert result.error is None
    assert result.duration_ms >= 0
    assert runner.running_jobs() == []


def test_non_zero_exit_fails_with_exit_code(runner: Runner) -> None:
    result = runner.run(make_spec("echo partial; exit 3"))

    assert result.status == "failed"
    assert result.exit_code == 3
    assert result.error == "exit code 3"
    assert result.stdout == "partial\n"


def test_output_file_key_value_and_multiline(runner: Runner) -> None:
    command = """
printf 'version=1.2.3\\nurl=http://x/?a=b\\n' >> "$SWITCHYARD_OUTPUT"
cat >> "$SWITCHYARD_OUTPUT" <<'DONE'
notes<<EOF
first line
second=line
EOF
empty=
DONE
"""
    result = runner.run(make_spec(command))

    assert result.status == "completed", result.stderr
    assert result.outputs == {
        "version": "1.2.3",
        "url": "http://x/?a=b",
        "notes": "first line\nsecond=line",
        "empty": "",
    }


def test_environment(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_AGENT_TOKEN", "agent-secret")
    monkeypatch.setenv("INHERITED_VAR", "from-agent")
    params_env = {"FROM_PARAMS": "params", "OVERRIDDEN": "params", "SWITCHYARD_JOB_ID": "forged"}
    spec = make_spec(
        'env; test -f "$SWITCHYARD_OUTPUT" && echo OUTPUT_EXISTS=1',
        env={"FROM_SPEC": "spec", "OVERRIDDEN": "spec"},
        params_env=params_env,
    )
    result = runner.run(spec)

    assert result.status == "completed", result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "SWITCHYARD_AGENT_TOKEN" not in seen
    assert seen["INHERITED_VAR"] == "from-agent"
    assert seen["FROM_SPEC"] == "spec"
    assert seen["FROM_PARAMS"] == "params"
    assert seen["OVERRIDDEN"] == "params"
    assert seen["SWITCHYARD_JOB_ID"] == spec.job_id
    assert seen["SWITCHYARD_EXECUTION_ID"] == "exec-1"
    assert seen["SWITCHYARD_NODE_ID"] == "node-1"
    assert seen["SWITCHYARD_ATTEMPT"] == "2"
    assert seen["SWITCHYARD_WORKFLOW"] == "restart-service"
    assert seen["OUTPUT_EXISTS"] == "1"
    assert not Path(seen["SWITCHYARD_OUTPUT"]).parent.exists(), "per-job temp dir not removed"


def test_malformed_params_env_fails_before_running(runner: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = runner.run(make_spec(f"touch {marker}", params_env=["A=1"]))

    assert result.status == "failed"
    assert result.error == "params.env must be an object of strings"
    assert not marker.exists()


def test_cwd_and_custom_shell(runner: Runner, tmp_path: Path) -> None:
    result = runner.run(make_spec("pwd; echo $0", cwd=str(tmp_path), shell="/bin/bash"))

    assert result.stdout.splitlines() == [str(tmp_path), "/bin/bash"]


def test_missing_command_and_unknown_action(runner: Runner) -> None:
    missing = runner.run(make_spec())
    assert missing.status == "failed"
    assert missing.error == "params.command is required and must be a non-empty string"

    unknown = runner.run(make_spec("true", action="teleport"))
    assert unknown.status == "failed"
    assert unknown.error == "unknown action type 'teleport'"


def test_timeout_kills_the_whole_process_group(runner: Runner, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    result = runner.run(make_spec(f'sleep 60 & echo $! > "{pidfile}"; wait', timeout_s=0.5))

    assert result.status == "timeout"
    assert result.error == "timed out after 0.5s"
    assert result.duration_ms < 10_000
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message=f"child {child} to die")


def test_timeout_escalates_to_sigkill_for_children_ignoring_sigterm(
    runner: Runner, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    command = f"trap '' TERM; sleep 60 & echo $! > \"{pidfile}\"; wait"
    result = runner.run(make_spec(command, timeout_s=0.3))

    assert result.status == "timeout"
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message=f"child {child} to die")


def test_cancel_kills_a_running_job(runner: Runner, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    spec = make_spec(f'sleep 60 & echo $! > "{pidfile}"; wait')
    results: list[ActionResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(spec)))
    thread.start()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="job start")

    assert runner.running_jobs() == [spec.job_id]
    assert runner.cancel(spec.job_id)
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert results[0].status == "failed"
    assert results[0].error == "killed by the control plane"
    child = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(child), timeout=5, message=f"child {child} to die")
    assert runner.running_jobs() == []


def test_output_is_capped_keeping_the_tail(runner: Runner) -> None:
    command = "head -c 3000000 /dev/zero | tr '\\0' a; echo; echo tail-marker; echo err >&2"
    result = runner.run(make_spec(command))

    assert result.status == "completed"
    assert result.stdout.startswith("[switchyard: output truncated, first ")
    assert result.stdout.endswith("a\ntail-marker\n")
    assert len(result.stdout.encode()) < 1024 * 1024 + 200
    assert result.stderr == "err\n"


def test_parse_json_from_last_stdout_line(runner: Runner) -> None:
    command = """echo noise; echo '{"count": 2, "ok": true}'; echo"""
    ok = runner.run(make_spec(command, parse="json"))
    assert ok.status == "completed"
    assert ok.outputs["json"] == {"count": 2, "ok": True}

    bad = runner.run(make_spec("echo not json", parse="json"))
    assert bad.status == "failed"
    assert bad.error is not None and bad.error.startswith("parse: json:")


def test_secret_values_are_masked(runner: Runner) -> None:
    spec = make_spec(
        'echo "pw=$PW"; echo "$PW" >&2; echo "token=$PW" >> "$SWITCHYARD_OUTPUT"',
        env={"PW": "hunter2"},
        mask=("hunter2",),
    )
    result = runner.run(spec)

    assert result.stdout == "pw=***\n"
    assert result.stderr == "***\n"
    assert result.outputs == {"token": "***"}


def test_start_failure_is_reported(runner: Runner) -> None:
    result = runner.run(make_spec("true", cwd="/nonexistent/dir"))

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("cannot start /bin/sh")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1\r\nb = spaced \n\n", {"a": "1", "b": " spaced "}),
        ("k<<END\nline\nEND\nafter=1\n", {"k": "line", "after": "1"}),
        ("k<<END\nunterminated\n", {"k": "unterminated"}),
        ("x=a<<b\n", {"x": "a<<b"}),
        ("garbage\n=novalue\nok=1\n", {"ok": "1"}),
        ("dup=1\ndup=2\n", {"dup": "2"}),
    ],
)
def test_parse_output_file(text: str, expected: dict[str, str]) -> None:
    assert parse_output_file(text) == expected


def test_agent_environment_is_untouched(runner: Runner) -> None:
    before = dict(os.environ)
    runner.run(make_spec("true", params_env={"ONLY_FOR_CHILD": "1"}))
    assert dict(os.environ) == before


@dataclass
class Watched:
    watcher: ProcessWatch
    returncode: int
    held_open: bool
    exited_after: float  # seconds from the start to the exit seen
    took: float  # seconds from the start until `run` returned


def watch(
    command: str,
    *,
    exit_via_pidfd: bool,
    timeout_s: float | None = None,
    drain_timeout: float = 5.0,
) -> Watched:
    """Run a real `sh -c command` under a `ProcessWatch`."""
    started = time.monotonic()
    process = start_process(["/bin/sh", "-c", command], env=None, cwd=None)
    watcher = ProcessWatch(
        process,
        NULL_SINK,
        job_id="watched",
        timeout_s=timeout_s,
        started=started,
        drain_timeout=drain_timeout,
        exit_via_pidfd=exit_via_pidfd,
    )
    returncode, held_open = watcher.run()
    took = time.monotonic() - started
    return Watched(watcher, returncode, held_open, watcher.exited_at - started, took)


def test_exit_while_a_background_process_holds_the_output_open(
    runner: Runner, tmp_path: Path
) -> None:
    """The job's own exit ends it: output written before is kept, the pipes are drained for a
    bounded time only, and the duration is the job's, not the drain's."""
    pidfile = tmp_path / "child.pid"
    command = f'echo before; sleep 60 & echo $! > "{pidfile}"; echo err >&2; exit 3'
    result = runner.run(make_spec(command))
    child = int(pidfile.read_text())
    try:
        assert result.status == "failed"
        assert (result.exit_code, result.error) == (3, "exit code 3")
        assert result.stdout == "before\n"
        assert result.stderr == (
            "err\n\n[switchyard: stopped reading output held open by a background process]"
        )
        assert result.duration_ms < 500
    finally:
        os.kill(child, 9)


EXIT_SEEN_BY = pytest.mark.parametrize(
    "exit_via_pidfd", [True, False], ids=["pidfd", "polled-without-pidfd"]
)


@EXIT_SEEN_BY
def test_an_exit_is_seen_while_output_is_held_open(tmp_path: Path, exit_via_pidfd: bool) -> None:
    pidfile = tmp_path / "child.pid"
    command = f'echo before; sleep 60 & echo $! > "{pidfile}"; echo err >&2; exit 3'
    run = watch(command, exit_via_pidfd=exit_via_pidfd, drain_timeout=0.5)
    child = int(pidfile.read_text())
    try:
        assert (run.returncode, run.held_open) == (3, True)
        assert (run.watcher.stdout.text(), run.watcher.stderr.text()) == ("before\n", "err\n")
        assert run.exited_after < 0.5, "timed at the exit, not after the drain"
        assert run.took < 5, "the drain is bounded"
    finally:
        os.kill(child, 9)


@EXIT_SEEN_BY
def test_pipes_closed_before_the_exit_and_the_timeout_still_applies(exit_via_pidfd: bool) -> None:
    closed_early = watch(
        "echo out; exec >&- 2>&-; sleep 0.2; exit 4", exit_via_pidfd=exit_via_pidfd
    )
    assert (closed_early.returncode, closed_early.watcher.stdout.text()) == (4, "out\n")
    assert closed_early.exited_after >= 0.2

    silent = watch("exec >&- 2>&-; sleep 60", exit_via_pidfd=exit_via_pidfd, timeout_s=0.3)
    assert silent.watcher.timed_out
    assert silent.took < 10


@EXIT_SEEN_BY
def test_output_and_timeout_with_either_way_of_seeing_the_exit(
    tmp_path: Path, exit_via_pidfd: bool
) -> None:
    ok = watch("echo hello; echo oops >&2", exit_via_pidfd=exit_via_pidfd)
    assert (ok.returncode, ok.watcher.stdout.text(), ok.watcher.stderr.text()) == (
        0,
        "hello\n",
        "oops\n",
    )
    pidfile = tmp_path / "child.pid"
    slow = watch(
        f'sleep 60 & echo $! > "{pidfile}"; wait', exit_via_pidfd=exit_via_pidfd, timeout_s=0.3
    )
    assert slow.watcher.timed_out
    child = int(pidfile.read_text())
    assert not pid_alive(child), "the run returns once the whole group is gone"


def test_jobs_get_private_directories_under_the_work_root(tmp_path: Path) -> None:
    runner = Runner(slots=1, work_root=str(tmp_path))
    result = runner.run(make_spec('echo "$SWITCHYARD_OUTPUT"; echo k=v >> "$SWITCHYARD_OUTPUT"'))

    output = Path(result.stdout.strip())
    assert output.parent.parent == runner.workspace.path
    assert runner.workspace.path.parent == tmp_path
    assert result.outputs == {"k": "v"}
    assert list(runner.workspace.path.iterdir()) == [runner.workspace.path / LOCK_NAME], (
        "the job's directory is removed after it"
    )
    runner.close()
    assert list(tmp_path.iterdir()) == [], "the agent's directory goes with it"


def test_the_work_root_is_configured_or_memory_backed_or_the_default(tmp_path: Path) -> None:
    configured = {"SWITCHYARD_AGENT_WORK_DIR": "/srv/jobs"}
    assert default_work_root(configured, memory_fs=tmp_path) == "/srv/jobs"
    assert default_work_root({}, memory_fs=tmp_path) == str(tmp_path)
    assert default_work_root({}, memory_fs=tmp_path / "missing") is None


def test_a_failing_live_stream_does_not_abandon_the_job(runner: Runner) -> None:
    class BrokenSink:
        def write(self, stream: str, data: bytes) -> None:
            raise RuntimeError("can't start new thread")

    command = "echo first; sleep 0.1; echo second; echo err >&2; exit 5"
    result = runner.run(make_spec(command), BrokenSink())  # type: ignore[arg-type]

    assert (result.status, result.exit_code) == ("failed", 5)
    assert result.stdout == "first\nsecond\n"
    assert result.stderr == "err\n"


def test_a_job_timed_at_zero_ms_keeps_its_own_duration(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An action's own timing wins even when it is 0 ms (a fast `sh` rounds down to 0): the
    runner's wall time would add the output drain and the job directory's set-up."""

    def quick_after_slow_setup(ctx) -> ActionResult:
        busy_until = time.monotonic() + 0.005
        while time.monotonic() < busy_until:
            pass
        return ActionResult(status="completed", exit_code=0, duration_ms=0)

    def untimed(ctx) -> ActionResult:
        return ActionResult(status="completed", exit_code=0)

    monkeypatch.setitem(ACTIONS, "quick-after-slow-setup", quick_after_slow_setup)
    monkeypatch.setitem(ACTIONS, "untimed", untimed)
    assert runner.run(make_spec(action="quick-after-slow-setup")).duration_ms == 0
    assert runner.run(make_spec(action="untimed")).duration_ms is not None
