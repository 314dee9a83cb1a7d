"""The ``ssh`` action against an in-process asyncssh server on 127.0.0.1.

The server does not run a shell: its process factory emulates a few commands (the last line
of what the agent sends), which is all the action needs to be exercised end to end.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest

from agents.agent.actions import ActionResult
from agents.agent.runner import Runner

from .helpers import CollectingSink, make_spec, wait_until

USER, PASSWORD = "deploy", "correct horse"
ENCRYPTED_KEY = (
    asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh", "pw").decode()
)


class SshServer:
    """asyncssh server on its own event loop thread; password and public-key auth."""

    def __init__(self) -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.commands: list[str] = []
        self.channel_closed = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._acceptor: Any = None

    def start(self) -> SshServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._acceptor.close()
            await self._acceptor.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def known_hosts(self, key: asyncssh.SSHKey | None = None) -> str:
        public = (key or self.host_key).export_public_key().decode().strip()
        return f"[127.0.0.1]:{self.port} {public}\n"

    async def _listen(self) -> None:
        server = self

        class Auth(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return (username, password) == (USER, PASSWORD)

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                expected = server.client_key.export_public_key()
                return username == USER and key.export_public_key() == expected

        self._acceptor = await asyncssh.create_server(
            Auth,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            process_factory=self._process,
        )
        self.port = self._acceptor.sockets[0].getsockname()[1]

    async def _process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        command = process.command or ""
        self.commands.append(command)
        verb, _, arg = command.splitlines()[-1].partition(" ")
        if verb == "echo":
            process.stdout.write(arg + "\n")
            process.stderr.write("note\n")
            process.exit(0)
        elif verb == "fail":
            process.stderr.write("boom\n")
            process.exit(int(arg))
        elif verb == "signal":
            process.exit_with_signal("KILL")
        elif verb == "hang":
            process.stdout.write("started\n")
            await process.channel.wait_closed()
            self.channel_closed.set()
        else:
            process.stderr.write(f"{verb}: command not found\n")
            process.exit(127)


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    server = SshServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def runner() -> Runner:
    return Runner(slots=2)


def _params(sshd: SshServer, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": USER,
        "password": PASSWORD,
        "known_hosts": sshd.known_hosts(),
        "command": command,
        **extra,
    }


def _ssh(runner: Runner, params: dict[str, Any], **spec: Any) -> ActionResult:
    return runner.run(make_spec(action="ssh", **spec, **params))


def test_password_auth_with_strict_host_key_checking(runner: Runner, sshd: SshServer) -> None:
    sink = CollectingSink()
    result = runner.run(make_spec(action="ssh", **_params(sshd, "echo hello")), sink)

    assert result.status == "completed", result.error
    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "note\n", 0)
    assert sink.text("stdout") == "hello\n"
    assert sink.text("stderr") == "note\n"


def test_remote_failure_reports_exit_code_and_stderr(runner: Runner, sshd: SshServer) -> None:
    result = _ssh(runner, _params(sshd, "fail 3"))

    assert (result.status, result.exit_code, result.error) == ("failed", 3, "exit code 3")
    assert result.stderr == "boom\n"


def test_remote_signal(runner: Runner, sshd: SshServer) -> None:
    result = _ssh(runner, _params(sshd, "signal"))

    assert (result.status, result.error) == ("failed", "killed by SIGKILL")


@pytest.mark.parametrize("passphrase", [None, "s3cret"])
def test_private_key_auth(runner: Runner, sshd: SshServer, passphrase: str | None) -> None:
    if passphrase:
        key_text = sshd.client_key.export_private_key("openssh", passphrase).decode()
    else:
        key_text = sshd.client_key.export_private_key("openssh").decode()
    params = _params(sshd, "echo key", private_key=key_text)
    del params["password"]
    if passphrase:
        params["passphrase"] = passphrase

    result = _ssh(runner, params)

    assert (result.status, result.stdout) == ("completed", "key\n"), result.error


def test_wrong_password(runner: Runner, sshd: SshServer) -> None:
    result = _ssh(runner, _params(sshd, "echo x", password="wrong"))

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("authentication failed")


def test_strict_rejects_an_unknown_host_key(runner: Runner, sshd: SshServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    ran_before = len(sshd.commands)
    result = _ssh(runner, _params(sshd, "echo x", known_hosts=sshd.known_hosts(other)))

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("host key verification failed")
    assert len(sshd.commands) == ran_before, "nothing may run on an unverified host"


def test_strict_needs_known_hosts(runner: Runner, sshd: SshServer) -> None:
    params = _params(sshd, "echo x")
    del params["known_hosts"]
    result = _ssh(runner, params)

    assert result.error == "strict host key checking needs params.known_hosts"


def test_accept_new_and_insecure_policies(runner: Runner, sshd: SshServer) -> None:
    unlisted = _params(sshd, "echo new", known_hosts_policy="accept-new")
    del unlisted["known_hosts"]
    assert _ssh(runner, unlisted).stdout == "new\n"

    other = asyncssh.generate_private_key("ssh-ed25519")
    changed = _params(
        sshd, "echo x", known_hosts_policy="accept-new", known_hosts=sshd.known_hosts(other)
    )
    result = _ssh(runner, changed)
    assert result.error is not None and result.error.startswith("host key verification failed")

    insecure = _params(
        sshd, "echo any", known_hosts_policy="insecure", known_hosts=sshd.known_hosts(other)
    )
    assert _ssh(runner, insecure).stdout == "any\n"


def test_env_and_cwd_prefix_the_command(runner: Runner, sshd: SshServer) -> None:
    spec = make_spec(
        action="ssh",
        cwd="/srv/my app",
        params_env={"GREETING": "it's here"},
        **_params(sshd, "echo done"),
    )
    result = runner.run(spec)

    assert result.status == "completed", result.error
    sent = sshd.commands[-1].splitlines()
    assert sent[0] == "cd '/srv/my app' || exit 1"
    assert f"export SWITCHYARD_JOB_ID={spec.job_id}" in sent
    assert "export GREETING='it'\"'\"'s here'" in sent
    assert not any("SWITCHYARD_OUTPUT" in line for line in sent)
    assert sent[-1] == "echo done"


def test_timeout_closes_the_channel(runner: Runner, sshd: SshServer) -> None:
    sshd.channel_closed.clear()
    result = _ssh(runner, _params(sshd, "hang"), timeout_s=0.5)

    assert (result.status, result.error) == ("timeout", "timed out after 0.5s")
    assert result.stdout == "started\n"
    wait_until(sshd.channel_closed.is_set, timeout=5, message="the remote channel to close")


def test_kill_from_the_control_plane(runner: Runner, sshd: SshServer) -> None:
    sink = CollectingSink()
    spec = make_spec(action="ssh", **_params(sshd, "hang"))
    results: list[ActionResult] = []
    thread = threading.Thread(target=lambda: results.append(runner.run(spec, sink)))
    thread.start()
    wait_until(lambda: sink.text("stdout") == "started\n", message="remote command to start")

    runner.cancel(spec.job_id, "killed by the control plane")
    asked = time.monotonic()
    thread.join(timeout=5)

    assert time.monotonic() - asked < 2
    assert (results[0].status, results[0].error) == ("failed", "killed by the control plane")


def test_connection_refused(runner: Runner) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    params = {"host": "127.0.0.1", "port": port, "command": "x", "known_hosts_policy": "insecure"}
    result = _ssh(runner, params)

    assert (result.status, result.error) == ("failed", "connection refused")


def test_secrets_in_remote_output_are_masked(runner: Runner, sshd: SshServer) -> None:
    result = _ssh(runner, _params(sshd, "echo token=abc123xyz"), mask=("abc123xyz",))

    assert result.stdout == "token=***\n"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"command": "x"}, "params.host is required"),
        ({"command": "x", "connection": "db"}, "params.host is required (connection 'db'"),
        ({"host": "h"}, "params.command is required"),
        ({"host": "h", "command": "x", "port": "ssh"}, "params.port must be an integer"),
        ({"host": "h", "command": "x", "private_key": "nope"}, "params.private_key: cannot"),
        (
            {"host": "h", "command": "x", "private_key": ENCRYPTED_KEY, "passphrase": "wrong"},
            "params.private_key: cannot import the key (Incorrect passphrase)",
        ),
        ({"host": "h", "command": "x", "known_hosts_policy": "yolo"}, "params.known_hosts_policy"),
        (
            {
                "host": "h",
                "command": "x",
                "known_hosts_policy": "insecure",
                "params_env": {"A B": "1"},
            },
            "params.env: invalid variable name",
        ),
    ],
)
def test_invalid_params(runner: Runner, params: dict[str, Any], error: str) -> None:
    result = _ssh(runner, params)

    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error)
