"""Test helpers: a real HTTP server standing in for the control plane, polling, job specs."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.agent.client import JobSpec

Reply = tuple[int, Any]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeControlPlane:
    """Records every request and answers from per-path scripts of replies.

    Each path has a list of replies consumed in order; the last one repeats. A reply may be a
    callable taking the recorded request, for answers that depend on it.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: dict[str, list[Reply | Callable[[Recorded], Reply]]] = {}
        self._unrecorded: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(
        self, path: str, *replies: Reply | Callable[[Recorded], Reply], record: bool = True
    ) -> None:
        """Script the replies for ``path``; ``record=False`` keeps its (big) bodies out of
        ``requests``."""
        with self._lock:
            self._replies[path] = list(replies)
            if not record:
                self._unrecorded.add(path)

    def calls(self, path: str) -> list[Recorded]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _reply(self, request: Recorded) -> Reply:
        with self._lock:
            if request.path not in self._unrecorded:
                self.requests.append(request)
            script = self._replies.get(request.path)
            if not script:
                return 404, {"detail": "Not found."}
            reply = script.pop(0) if len(script) > 1 else script[0]
        return reply(request) if callable(reply) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                status, payload = plane._reply(
                    Recorded("POST", self.path, dict(self.headers.items()), body)
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class OutputCollector:
    """Reply for ``POST .../output`` that behaves like the control plane: it keeps chunks by
    ``seq`` (ignoring repeats), answers ``{accepted, last_seq}`` and can ask for a kill.

    ``bytes`` counts the data of all chunks but ``[switchyard: …]`` markers; with
    ``keep_data=False`` only the markers are kept (for jobs printing a lot).
    """

    def __init__(self, *, cancel: bool = False, keep_data: bool = True) -> None:
        self.cancel = cancel
        self.keep_data = keep_data
        self.chunks: list[dict[str, Any]] = []
        self.requests = 0
        self.bytes = 0
        self.last_seq = 0
        self.first_reply_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests += 1
            fresh = [chunk for chunk in request.body["chunks"] if chunk["seq"] > self.last_seq]
            for chunk in fresh:
                marker = chunk["data"].startswith("[switchyard: ")
                if not marker:
                    self.bytes += len(chunk["data"].encode())
                if self.keep_data or marker:
                    self.chunks.append(chunk)
            if fresh:
                self.last_seq = fresh[-1]["seq"]
            if self.first_reply_at is None:
                self.first_reply_at = time.monotonic()
            body: dict[str, Any] = {"accepted": len(fresh), "last_seq": self.last_seq}
        if self.cancel:
            body["cancel"] = True
        return 200, body

    def text(self, stream: str | None = None) -> str:
        with self._lock:
            return "".join(c["data"] for c in self.chunks if stream in (None, c["stream"]))

    def seqs(self) -> list[int]:
        with self._lock:
            return [chunk["seq"] for chunk in self.chunks]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy, failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def make_spec(
    command: str | None = None,
    *,
    action: str = "shell",
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    mask: tuple[str, ...] = (),
    job_id: str | None = None,
    params_env: Any = None,
    network_allow: tuple[str, ...] = (),
    **params: Any,
) -> JobSpec:
    """A claimed shell job; ``env`` is the spec's env, ``params_env`` becomes ``params.env``."""
    if command is not None:
        params["command"] = command
    if params_env is not None:
        params["env"] = params_env
    return JobSpec(
        job_id=job_id or str(uuid.uuid4()),
        lease="lease-1",
        action=action,
        execution_id="exec-1",
        node_id="node-1",
        attempt=2,
        workflow="restart-service",
        params=params,
        timeout_s=timeout_s,
        env=env or {},
        mask=mask,
        network_allow=network_allow,
    )


class CollectingSink:
    """An ``OutputSink`` that keeps what an action streamed, per stream."""

    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {}
        self._lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        with self._lock:
            self.data.setdefault(stream, bytearray()).extend(data)

    def text(self, stream: str) -> str:
        with self._lock:
            return bytes(self.data.get(stream, b"")).decode()
