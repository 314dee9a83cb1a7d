"""The agent configuration file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.agent.config import (
    AgentConfig,
    ConfigError,
    default_config_path,
    load_config,
    save_config,
)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _config() -> AgentConfig:
    return AgentConfig(
        url="http://cp:8000",
        name="web-01",
        token="agent-token",
        pools=["linux", "default"],
        labels={"dc": "fra"},
        broker_url="redis://localhost:6379/0",
        heartbeat_interval=5,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_saved_config_is_0600_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "agent.json"
    save_config(_config(), path)

    assert _mode(path) == 0o600
    assert json.loads(path.read_text())["token"] == "agent-token"
    assert load_config(path) == _config()
    assert [p.name for p in path.parent.iterdir()] == ["agent.json"], "temp file left behind"


@pytest.mark.usefixtures("permissive_umask")
def test_existing_world_readable_file_is_replaced_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text("{}")
    path.chmod(0o644)

    save_config(_config(), path)

    assert _mode(path) == 0o600
    assert load_config(path).name == "web-01"


def test_queues() -> None:
    assert _config().queues == ["pool.linux", "pool.default", "agent.web-01"]


def test_environment_and_explicit_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.json"
    save_config(_config(), path)
    monkeypatch.setenv("SWITCHYARD_AGENT_TOKEN", "env-token")
    monkeypatch.setenv("SWITCHYARD_URL", "https://cp.example/")
    monkeypatch.setenv("SWITCHYARD_BROKER_URL", "redis://env-broker/1")

    config = load_config(path)
    assert (config.token, config.url, config.broker_url) == (
        "env-token",
        "https://cp.example",
        "redis://env-broker/1",
    )
    assert load_config(path, broker_url="redis://flag/2").broker_url == "redis://flag/2"


def test_missing_or_incomplete_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="register"):
        load_config(tmp_path / "absent.json")

    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"url": "http://x", "name": "a"}))
    with pytest.raises(ConfigError, match="token"):
        load_config(incomplete)

    no_broker = tmp_path / "no-broker.json"
    no_broker.write_text(json.dumps({"url": "http://x", "name": "a", "token": "t"}))
    with pytest.raises(ConfigError, match="broker"):
        load_config(no_broker)


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWITCHYARD_AGENT_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_config_path() == tmp_path / ".config" / "switchyard" / "agent.json"

    monkeypatch.setenv("SWITCHYARD_AGENT_CONFIG", str(tmp_path / "elsewhere.json"))
    assert default_config_path() == tmp_path / "elsewhere.json"
