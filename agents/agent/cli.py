"""``switchyard-agent``: ``register`` with the control plane, then ``run`` the worker."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from agents.agent import __version__
from agents.agent.client import ApiError, register
from agents.agent.config import (
    DEFAULT_HEARTBEAT_INTERVAL,
    ENV_URL,
    AgentConfig,
    ConfigError,
    default_config_path,
    load_config,
    save_config,
)
from agents.agent.worker import DEFAULT_CONCURRENCY, run_worker
from agents.agent.workspace import WorkspaceError

ENV_ENROLLMENT_TOKEN = "SWITCHYARD_ENROLLMENT_TOKEN"

EXIT_ERROR = 1
EXIT_REFUSED = 2


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard-agent", description="Run Switchyard jobs on this host."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    config_help = (
        "config file (default: $SWITCHYARD_AGENT_CONFIG or ~/.config/switchyard/agent.json)"
    )

    reg = commands.add_parser("register", help="trade an enrollment token for an agent token")
    reg.add_argument("--url", default=os.environ.get(ENV_URL), help="control plane base URL")
    reg.add_argument(
        "--enrollment-token",
        default=os.environ.get(ENV_ENROLLMENT_TOKEN),
        help=f"enrollment token (default: ${ENV_ENROLLMENT_TOKEN})",
    )
    reg.add_argument("--name", required=True, help="unique agent name, e.g. web-01")
    reg.add_argument(
        "--pool", dest="pools", action="append", default=[], help="pool to join (repeatable)"
    )
    reg.add_argument(
        "--label", dest="labels", action="append", type=_label, default=[], metavar="KEY=VALUE"
    )
    reg.add_argument("--config", type=Path, help=config_help)

    run = commands.add_parser("run", help="consume jobs until SIGTERM/SIGINT")
    run.add_argument("--config", type=Path, help=config_help)
    run.add_argument("--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY)
    run.add_argument("--broker-url", help="override the broker URL ($SWITCHYARD_BROKER_URL)")
    run.add_argument(
        "--heartbeat-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds between heartbeats (overrides the config file)",
    )
    run.add_argument("--loglevel", default="INFO", help="log level (default INFO)")
    return parser


def cmd_register(args: argparse.Namespace) -> int:
    if not args.url or not args.enrollment_token:
        missing = "--url" if not args.url else "--enrollment-token"
        print(f"switchyard-agent register: {missing} is required", file=sys.stderr)
        return EXIT_REFUSED
    path = (args.config or default_config_path()).expanduser()
    pools = args.pools or ["default"]
    try:
        data = register(
            args.url,
            enrollment_token=args.enrollment_token,
            name=args.name,
            pools=pools,
            labels=dict(args.labels),
            hostname=socket.gethostname(),
        )
    except ApiError as exc:
        print(f"registration refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED if 400 <= exc.status < 500 else EXIT_ERROR
    except httpx.HTTPError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return EXIT_ERROR

    config = AgentConfig(
        url=args.url.rstrip("/"),
        name=str(data.get("name") or args.name),
        token=str(data["token"]),
        pools=[str(pool) for pool in data.get("pools") or pools],
        labels={str(k): str(v) for k, v in (data.get("labels") or dict(args.labels)).items()},
        broker_url=str(data.get("broker_url") or ""),
        heartbeat_interval=float(data.get("heartbeat_interval") or DEFAULT_HEARTBEAT_INTERVAL),
    )
    save_config(config, path)
    queues = data.get("queues") or config.queues
    print(f"registered agent {config.name}")
    print(f"queues: {', '.join(queues)}")
    print(f"config written to {path}")
    if not config.broker_url:
        print("note: no broker URL was returned; pass --broker-url to `run`", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config or default_config_path(), broker_url=args.broker_url)
    except ConfigError as exc:
        print(f"switchyard-agent run: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.heartbeat_interval is not None:
        config.heartbeat_interval = args.heartbeat_interval
    try:
        return run_worker(config, concurrency=args.concurrency, loglevel=args.loglevel.upper())
    except WorkspaceError as exc:
        print(f"switchyard-agent run: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "register":
        return cmd_register(args)
    return cmd_run(args)
