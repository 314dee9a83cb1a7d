"""Agent configuration: the JSON file written by ``register`` and read by ``run``."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HEARTBEAT_INTERVAL = 10.0

ENV_CONFIG_PATH = "SWITCHYARD_AGENT_CONFIG"
ENV_TOKEN = "SWITCHYARD_AGENT_TOKEN"
ENV_URL = "SWITCHYARD_URL"
ENV_BROKER_URL = "SWITCHYARD_BROKER_URL"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or incomplete."""


@dataclass
class AgentConfig:
    """Everything an agent needs to talk to the control plane and the broker."""

    url: str
    name: str
    token: str
    pools: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    broker_url: str = ""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL

    @property
    def queues(self) -> list[str]:
        """Queues to consume: one per pool plus the agent's own queue."""
        return [f"pool.{pool}" for pool in self.pools] + [f"agent.{self.name}"]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Build from parsed JSON, rejecting files that lack the identity keys."""
        missing = [key for key in ("url", "name", "token") if not data.get(key)]
        if missing:
            raise ConfigError(f"configuration is missing {', '.join(missing)}")
        interval = float(data.get("heartbeat_interval") or 0)
        if interval <= 0:
            interval = DEFAULT_HEARTBEAT_INTERVAL
        return cls(
            url=str(data["url"]).rstrip("/"),
            name=str(data["name"]),
            token=str(data["token"]),
            pools=[str(pool) for pool in data.get("pools") or []],
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            broker_url=str(data.get("broker_url") or ""),
            heartbeat_interval=interval,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_config_path() -> Path:
    """``$SWITCHYARD_AGENT_CONFIG`` or ``~/.config/switchyard/agent.json``."""
    explicit = os.environ.get(ENV_CONFIG_PATH)
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".config" / "switchyard" / "agent.json"


def save_config(config: AgentConfig, path: Path) -> None:
    """Write the config atomically; the file holds a token, so it is born with mode 0600.

    A temporary file created with 0600 is renamed over the target, so an existing file with
    looser permissions is replaced rather than reused and there is never a window in which the
    token is readable by others.
    """
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_config(path: Path, *, broker_url: str | None = None) -> AgentConfig:
    """Read the config file and apply environment (then explicit) overrides."""
    path = path.expanduser()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `switchyard-agent register` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not contain a JSON object")
    overrides = {ENV_TOKEN: "token", ENV_URL: "url", ENV_BROKER_URL: "broker_url"}
    for env_name, key in overrides.items():
        if os.environ.get(env_name):
            data[key] = os.environ[env_name]
    if broker_url:
        data["broker_url"] = broker_url
    config = AgentConfig.from_dict(data)
    if not config.broker_url:
        raise ConfigError(f"no broker URL in {path}; pass --broker-url or set {ENV_BROKER_URL}")
    return config
