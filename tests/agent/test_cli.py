"""``switchyard-agent register`` and ``run`` argument handling."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agents.agent import __version__
from agents.agent.cli import main
from agents.agent.client import AgentClient
from agents.agent.config import AgentConfig, save_config
from agents.agent.runner import Runner
from agents.agent.worker import TASK_NAME, create_app

from .helpers import FakeControlPlane

REGISTER = "/api/agent/v1/register"


def _registered(name: str = "web-01") -> dict[str, object]:
    return {
        "name": name,
        "token": "issued-agent-token",
        "pools": ["linux", "default"],
        "labels": {"dc": "fra"},
        "queues": ["pool.linux", "pool.default", f"agent.{name}"],
        "broker_url": "redis://broker:6379/0",
        "heartbeat_interval": 7,
    }


def test_register_writes_a_private_config(
    control_plane: FakeControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control_plane.respond(REGISTER, (201, _registered()))
    path = tmp_path / "etc" / "agent.json"

    code = main(
        [
            "register",
            "--url",
            control_plane.url + "/",
            "--enrollment-token",
            "enroll-xyz",
            "--name",
            "web-01",
            "--pool",
            "linux",
            "--pool",
            "default",
            "--label",
            "dc=fra",
            "--config",
            str(path),
        ]
    )

    assert code == 0
    request = control_plane.calls(REGISTER)[0]
    assert "Authorization" not in request.headers
    assert request.body["enrollment_token"] == "enroll-xyz"
    assert request.body["name"] == "web-01"
    assert request.body["pools"] == ["linux", "default"]
    assert request.body["labels"] == {"dc": "fra"}
    assert request.body["version"] == __version__
    assert request.body["hostname"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "url": control_plane.url,
        "name": "web-01",
        "token": "issued-agent-token",
        "pools": ["linux", "default"],
        "labels": {"dc": "fra"},
        "broker_url": "redis://broker:6379/0",
        "heartbeat_interval": 7.0,
    }
    out = capsys.readouterr().out
    assert "web-01" in out
    assert "pool.linux, pool.default, agent.web-01" in out


def test_register_refusal_prints_the_error_and_exits_2(
    control_plane: FakeControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control_plane.respond(
        REGISTER,
        (
            400,
            {
                "detail": "Invalid registration.",
                "errors": [{"path": "name", "message": "already taken"}],
            },
        ),
    )
    path = tmp_path / "agent.json"

    code = main(
        [
            "register",
            "--url",
            control_plane.url,
            "--enrollment-token",
            "bad",
            "--name",
            "web-01",
            "--config",
            str(path),
        ]
    )

    assert code == 2
    err = capsys.readouterr().err
    assert "Invalid registration." in err
    assert "name: already taken" in err
    assert not path.exists()


def test_register_without_pools_asks_for_default_and_reads_token_from_env(
    control_plane: FakeControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_ENROLLMENT_TOKEN", "from-env")
    monkeypatch.setenv("SWITCHYARD_AGENT_CONFIG", str(tmp_path / "agent.json"))
    control_plane.respond(REGISTER, (201, _registered()))

    assert main(["register", "--url", control_plane.url, "--name", "web-01"]) == 0

    body = control_plane.calls(REGISTER)[0].body
    assert body["enrollment_token"] == "from-env"
    assert body["pools"] == ["default"]
    assert (tmp_path / "agent.json").exists()


def test_register_unreachable_server_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "register",
            "--url",
            "http://127.0.0.1:9",
            "--enrollment-token",
            "t",
            "--name",
            "a",
            "--config",
            str(tmp_path / "agent.json"),
        ]
    )
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err


def test_run_without_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "missing.json")]) == 2
    assert "register" in capsys.readouterr().err


def test_bad_label_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "register",
                "--url",
                "http://x",
                "--enrollment-token",
                "t",
                "--name",
                "a",
                "--label",
                "x",
            ]
        )
    assert exited.value.code == 2


def test_celery_app_configuration() -> None:
    config = AgentConfig(
        url="http://cp", name="web-01", token="t", pools=["linux"], broker_url="memory://"
    )
    with AgentClient(config.url, config.token) as client:
        app = create_app(config, client, Runner(slots=3), concurrency=3)

    conf = app.conf
    assert conf.broker_url == "memory://"
    assert conf.worker_pool == "threads"
    assert conf.worker_concurrency == 3
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late is True
    assert conf.task_ignore_result is True
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.broker_connection_retry_on_startup is True
    assert not conf.result_backend
    task = app.tasks[TASK_NAME]
    assert task.acks_late is True
    assert task.ignore_result is True
    user_tasks = [name for name in app.tasks if not name.startswith("celery.")]
    assert user_tasks == [TASK_NAME]


def test_run_heartbeat_interval_overrides_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.json"
    save_config(AgentConfig(url="http://cp", name="a", token="t", broker_url="memory://"), path)
    started: list[AgentConfig] = []

    def fake_run_worker(config: AgentConfig, **kwargs: object) -> int:
        started.append(config)
        return 0

    monkeypatch.setattr("agents.agent.cli.run_worker", fake_run_worker)

    assert main(["run", "--config", str(path), "--heartbeat-interval", "2.5"]) == 0
    assert main(["run", "--config", str(path)]) == 0
    assert [config.heartbeat_interval for config in started] == [2.5, 10.0]
    with pytest.raises(SystemExit) as exited:
        main(["run", "--config", str(path), "--heartbeat-interval", "0"])
    assert exited.value.code == 2


def test_run_with_an_unusable_work_directory_says_so_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.json"
    save_config(AgentConfig(url="http://cp", name="a", token="t", broker_url="memory://"), path)
    monkeypatch.setenv("SWITCHYARD_AGENT_WORK_DIR", str(tmp_path / "missing"))

    assert main(["run", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert "cannot make the agent's job directory in" in error
    assert "SWITCHYARD_AGENT_WORK_DIR" in error and "No such file or directory" in error
