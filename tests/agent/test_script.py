"""The ``script`` action with real interpreters."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from agents.agent.runner import Runner

from .helpers import CollectingSink, make_spec


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def test_default_interpreter_is_bash_with_args(runner: Runner) -> None:
    body = 'echo "bash=${BASH_VERSION:+yes} args=$# first=$1 second=$2"\necho err >&2\nexit 3\n'
    result = runner.run(make_spec(action="script", body=body, args=["a b", "c"]))

    assert result.stdout == "bash=yes args=2 first=a b second=c\n"
    assert result.stderr == "err\n"
    assert (result.status, result.exit_code, result.error) == ("failed", 3, "exit code 3")


def test_python_means_python3_on_the_jobs_path(runner: Runner) -> None:
    body = "import sys\nprint(sys.version_info[0], sys.argv[1:])\n"
    result = runner.run(make_spec(action="script", interpreter="python", body=body, args="x"))

    assert result.status == "completed", result.stderr
    assert result.stdout == "3 ['x']\n"


def test_interpreter_path_with_options_env_cwd_and_outputs(runner: Runner, tmp_path: Path) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    body = 'pwd\necho "$GREETING"\necho "answer=42" >> "$SWITCHYARD_OUTPUT"\nunset NOPE\n$NOPE_X'
    result = runner.run(
        make_spec(
            action="script",
            interpreter=f"{sh} -u",
            body=body,
            cwd=str(tmp_path),
            params_env={"GREETING": "hello"},
        )
    )

    assert result.stdout.splitlines() == [str(tmp_path), "hello"]
    assert result.outputs == {"answer": "42"}
    assert result.status == "failed", "-u makes the unset variable an error"
    assert "NOPE_X" in result.stderr


def test_body_is_written_to_the_jobs_temp_dir_and_removed(runner: Runner) -> None:
    result = runner.run(make_spec(action="script", interpreter="sh", body='echo "$0"; cat "$0"'))

    script_path = Path(result.stdout.splitlines()[0])
    assert script_path.name == "script"
    assert result.stdout.splitlines()[1:] == ['echo "$0"; cat "$0"']
    assert not script_path.parent.exists()


def test_parse_json_and_live_output(runner: Runner) -> None:
    sink = CollectingSink()
    body = "import json\nprint('progress')\nprint(json.dumps({'ok': True}))"
    spec = make_spec(action="script", interpreter=sys.executable, body=body, parse="json")
    result = runner.run(spec, sink)

    assert result.outputs["json"] == {"ok": True}
    assert sink.text("stdout") == 'progress\n{"ok": true}\n'


def test_timeout_kills_the_script(runner: Runner) -> None:
    result = runner.run(make_spec(action="script", body="sleep 30", timeout_s=0.3))

    assert (result.status, result.error) == ("timeout", "timed out after 0.3s")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "params.body is required and must be a non-empty string"),
        ({"body": "x", "interpreter": "no-such-interpreter"}, "interpreter 'no-such-interpreter'"),
        ({"body": "x", "interpreter": "/nonexistent/bin/x"}, "interpreter /nonexistent/bin/x"),
        ({"body": "x", "args": {"a": 1}}, "params.args must be a string or a list of strings"),
        ({"body": "x", "interpreter": "'unbalanced"}, "params.interpreter:"),
    ],
)
def test_invalid_params(runner: Runner, params: dict[str, object], error: str) -> None:
    result = runner.run(make_spec(action="script", **params))

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error)
