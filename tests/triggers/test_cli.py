"""The `switchyard` CLI against a real HTTP server (pytest-django's live server): login and its
0600 config file, apply, run (channel `cli`), executions and approvals commands, errors.
Following a run to its end needs an agent: see tests/e2e/test_triggers.py."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import textwrap

import pytest

from executions.models import Execution
from orchestrator.authentication import create_api_token
from orchestrator.cli.main import main

pytestmark = pytest.mark.django_db(transaction=True)

GATED = textwrap.dedent(
    """
    slug: gated
    inputs:
      service: {type: string, required: true}
      replicas: {type: integer, default: 1}
    nodes:
      - id: ask
        type: approval
        message: "restart {{ inputs.service }}?"
        allow_self_approval: true
    """
)


class Cli:
    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        prefix = []
        if self.url:
            prefix += ["--url", self.url]
        if self.token:
            prefix += ["--token", self.token]
        code = main([*prefix, *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("SWITCHYARD_URL", "SWITCHYARD_TOKEN", "SWITCHYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def token(admin_user) -> str:
    return create_api_token(admin_user)


@pytest.fixture
def cli(live_server, token, home) -> Cli:
    return Cli(live_server.url, token)


def test_cli_imports_without_django():
    probe = (
        "import sys, orchestrator.cli.main as m; "
        "bad = sorted({n.split('.')[0] for n in sys.modules} & {'django', 'celery', 'yaml', "
        "'rest_framework', 'executions', 'agents'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_login_stores_url_and_token_readable_by_the_owner_only(live_server, token, home):
    code, out, _ = Cli()("login", "--url", live_server.url + "/", "--token", token)
    assert code == 0
    path = home / ".config" / "switchyard" / "cli.json"
    assert str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": live_server.url, "token": token}
    # later commands use the stored credentials
    code, out, _ = Cli()("workflows", "list")
    assert code == 0
    assert out.startswith("SLUG")


def test_login_with_environment_variables(live_server, token, home, monkeypatch):
    monkeypatch.setenv("SWITCHYARD_URL", live_server.url)
    monkeypatch.setenv("SWITCHYARD_TOKEN", token)
    assert Cli()("login")[0] == 0
    monkeypatch.delenv("SWITCHYARD_TOKEN")
    monkeypatch.delenv("SWITCHYARD_URL")
    assert Cli()("workflows", "list")[0] == 0


def test_login_with_a_bad_token_saves_nothing(live_server, home):
    code, _, err = Cli()("login", "--url", live_server.url, "--token", "nope")
    assert code == 2
    assert "rejected the token" in err
    assert not (home / ".config" / "switchyard" / "cli.json").exists()


def test_without_credentials_it_says_how_to_log_in(home):
    code, _, err = Cli()("workflows", "list")
    assert code == 2
    assert "switchyard login" in err


def test_unreachable_server_is_exit_2(home):
    code, _, err = Cli("http://127.0.0.1:9", "t")("workflows", "list")
    assert code == 2
    assert "cannot reach" in err


def test_apply_creates_then_saves_versions(cli, tmp_path):
    source = tmp_path / "gated.yaml"
    source.write_text(GATED)
    code, out, _ = cli("apply", "-f", str(source))
    assert (code, out.strip()) == (0, "created gated v1 (published)")
    source.write_text(GATED.replace("restart", "bounce"))
    code, out, _ = cli("apply", "-f", str(source))
    assert code == 0
    assert "saved gated v2 (draft" in out
    code, out, _ = cli("--json", "apply", "-f", str(source), "--publish")
    assert json.loads(out) == {"slug": "gated", "version": 3, "published": True}
    code, out, _ = cli("workflows", "list")
    assert out.splitlines()[1].split()[:4] == ["gated", "gated", "yes", "3"]


def test_apply_reports_validation_errors_with_paths(cli, tmp_path):
    source = tmp_path / "bad.yaml"
    source.write_text("slug: bad\nnodes:\n  - {id: a, action: nope}\n")
    code, _, err = cli("apply", "-f", str(source))
    assert code == 2
    assert "nodes[0].action: unknown action type 'nope'" in err


def test_run_sends_inputs_and_the_cli_channel(cli, tmp_path, admin_user):
    (tmp_path / "gated.yaml").write_text(GATED)
    cli("apply", "-f", str(tmp_path / "gated.yaml"))
    code, out, _ = cli(
        "run", "gated", "--input", "service=web", "--input", "replicas=3", "--label", "team=sre"
    )
    assert code == 0, out
    assert "started (paused)" in out or "started (running)" in out
    execution = Execution.objects.get()
    assert str(execution.pk) in out
    assert execution.inputs == {"service": "web", "replicas": 3}
    assert execution.labels == {"team": "sre"}
    assert execution.trigger == {"kind": "manual", "user": admin_user.username, "channel": "cli"}
    assert execution.idempotency_key.startswith("cli-"), "each run carries its own key"


def test_run_errors_carry_field_paths(cli, tmp_path):
    (tmp_path / "gated.yaml").write_text(GATED)
    cli("apply", "-f", str(tmp_path / "gated.yaml"))
    code, _, err = cli("run", "gated", "--input", "replicas=many")
    assert code == 2
    assert "inputs.service: required" in err
    assert "inputs.replicas" in err
    code, _, err = cli("run", "gated", "--input", "novalue")
    assert code == 2
    assert "expected key=value" in err


def test_run_each_starts_one_run_per_line_in_batches(cli, tmp_path, admin_user, monkeypatch):
    import orchestrator.cli.main as cli_main

    monkeypatch.setattr(cli_main, "RUNS_PER_REQUEST", 2)
    (tmp_path / "gated.yaml").write_text(GATED)
    cli("apply", "-f", str(tmp_path / "gated.yaml"))
    services = ["web", "db", "cache", "queue", "search"]
    lines = [json.dumps({"service": name}) for name in services]
    lines[1] = json.dumps({"service": "db", "replicas": 5})
    (tmp_path / "runs.jsonl").write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))

    code, out, err = cli(
        "run",
        "gated",
        "--each",
        str(tmp_path / "runs.jsonl"),
        "--input",
        "replicas=2",
        "--label",
        "team=sre",
    )

    assert code == 0, err
    started = [line.split()[1] for line in out.splitlines()]
    assert len(started) == 5
    by_id = {str(e.pk): e for e in Execution.objects.all()}
    runs = [by_id[execution_id] for execution_id in started]
    assert [run.inputs for run in runs] == [
        {"service": "web", "replicas": 2},
        {"service": "db", "replicas": 5},
        {"service": "cache", "replicas": 2},
        {"service": "queue", "replicas": 2},
        {"service": "search", "replicas": 2},
    ]
    assert {run.labels["team"] for run in runs} == {"sre"}
    assert {run.trigger["channel"] for run in runs} == {"cli"}
    assert len({run.idempotency_key for run in runs}) == 5


def test_run_each_names_the_line_of_a_bad_run_and_starts_none(cli, tmp_path):
    (tmp_path / "gated.yaml").write_text(GATED)
    cli("apply", "-f", str(tmp_path / "gated.yaml"))
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"service": "web"}\n\n{"replicas": "many"}\n')
    code, _, err = cli("run", "gated", "--each", str(runs))
    assert code == 2
    assert "line 3: inputs.service: required" in err
    assert "line 3: inputs.replicas" in err
    assert not Execution.objects.exists()

    runs.write_text('{"service": "web"}\n["db"]\n')
    code, _, err = cli("run", "gated", "--each", str(runs))
    assert code == 2 and "line 2: expected an object of inputs" in err
    runs.write_text('{"service": "web"\n')
    code, _, err = cli("run", "gated", "--each", str(runs))
    assert code == 2 and "line 1: not JSON" in err
    code, _, err = cli("run", "gated", "--each", str(runs), "--follow")
    assert code == 2 and "cannot be used with --each" in err
    code, _, err = cli("run", "gated", "--each", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err
    assert not Execution.objects.exists()


def test_executions_and_approvals_commands(cli, tmp_path):
    (tmp_path / "gated.yaml").write_text(GATED)
    cli("apply", "-f", str(tmp_path / "gated.yaml"))
    first = json.loads(cli("--json", "run", "gated", "--input", "service=a")[1])
    second = json.loads(cli("--json", "run", "gated", "--input", "service=b")[1])

    code, out, _ = cli("executions", "list", "--workflow", "gated")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == [second["id"], first["id"]]
    assert "manual (admin" in out or "manual (root" in out

    code, out, _ = cli("executions", "show", first["id"])
    assert code == 0
    assert "workflow:  gated v1" in out
    assert "ask" in out

    code, out, _ = cli("approvals", "list")
    assert code == 0
    rows = out.splitlines()[1:]
    assert len(rows) == 2
    approval_ids = {row.split()[2]: row.split()[0] for row in rows}  # execution -> approval id
    code, out, err = cli("approvals", "approve", approval_ids[first["id"]], "--note", "go")
    assert code == 0, err
    assert "approved" in out
    code, out, err = cli("approvals", "reject", approval_ids[second["id"]])
    assert code == 0, err
    assert "rejected" in out
    assert cli("approvals", "list")[1].splitlines()[1:] == []
    assert len(cli("approvals", "list", "--status", "all")[1].splitlines()[1:]) == 2

    code, out, _ = cli("--json", "executions", "show", first["id"])
    assert json.loads(out)["status"] == "completed"
    code, _, err = cli("executions", "cancel", first["id"])
    assert code == 2
    assert "409" in err

    rerun = json.loads(cli("--json", "executions", "rerun", first["id"])[1])
    assert rerun["rerun_of"] == first["id"]
    code, out, _ = cli("executions", "cancel", rerun["id"])
    assert code == 0
    assert "cancel requested" in out
    assert Execution.objects.get(pk=rerun["id"]).status == "cancelled"


def test_triggers_and_events_commands(cli, tmp_path):
    (tmp_path / "hooked.yaml").write_text(
        textwrap.dedent(
            """
            slug: hooked
            nodes: [{id: hold, type: wait, duration: 1h}]
            triggers:
              - {type: webhook}
              - {type: cron, cron: "0 3 * * *", timezone: Europe/Berlin}
              - {type: event, event: "deploy.*"}
            """
        )
    )
    cli("apply", "-f", str(tmp_path / "hooked.yaml"))
    code, out, _ = cli("triggers", "list", "hooked")
    assert code == 0
    assert "/hooks/" in out
    assert "0 3 * * * Europe/Berlin; next:" in out
    assert "deploy.*" in out
    code, out, _ = cli("events", "send", "deploy.done", "--dedup-key", "d1", "--data", '{"id": 7}')
    assert code == 0
    assert "started 1 run(s)" in out
    code, out, _ = cli("events", "send", "deploy.done", "--dedup-key", "d1")
    assert "duplicate" in out
