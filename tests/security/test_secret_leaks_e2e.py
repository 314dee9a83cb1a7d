"""Secrets on the real stack: a job prints a secret raw, base64, URL-encoded and split across
output chunks (stdout, stderr, outputs file); then every place it could land is searched for
every form: all text/json columns of every table, the API's responses, the WebSocket messages a
signed-in browser receives, the processes' log files and every key of the stack's Redis
database. Expected: 0 occurrences, while the masked markers show the job really printed them."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from urllib.parse import quote, quote_plus

import httpx
import psycopg
import pytest
import redis
from websockets.sync.client import connect

from tests.e2e.helpers import create, execute, wait_for_status
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SECRET = "Zq9+t/Wx y=K&p%S3cr3t-e2e-7731"
SECRET_NAME = "sec_leak_token"


def forms(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "raw": value,
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "url": quote(value, safe=""),
        "url_plus": quote_plus(value),
        "first_half": value[: len(value) // 2 + 4],
        "second_half": value[len(value) // 2 - 4 :],
    }


LEAKY = {
    "slug": "sec-leaky",
    "nodes": [
        {
            "id": "leak",
            "action": "shell",
            "with": {
                "command": (
                    'while [ ! -e "$GO" ]; do sleep 0.05; done\n'
                    'printf "raw=%s\\n" "$TOKEN"\n'
                    'printf "b64=%s\\n" "$(printf %s "$TOKEN" | base64 | tr -d "\\n")"\n'
                    'printf "url=%s\\n" "$(python3 -c \'import os, urllib.parse as u; '
                    'print(u.quote(os.environ["TOKEN"], safe=""))\')"\n'
                    'printf "err=%s\\n" "$TOKEN" >&2\n'
                    'printf "split=%s" "$(printf %s "$TOKEN" | cut -c1-15)"\n'
                    "sleep 1.5\n"
                    'printf "%s\\n" "$(printf %s "$TOKEN" | cut -c16-)"\n'
                    'echo "out=$TOKEN" >> "$SWITCHYARD_OUTPUT"\n'
                    "echo done\n"
                ),
                "env": {"TOKEN": "{{ secrets.sec_leak_token }}", "GO": "{{ inputs.go }}"},
            },
        }
    ],
    "inputs": {"go": {"type": "string"}},
}


def session_cookie(stack) -> str:
    with httpx.Client(base_url=stack.url) as browser:
        browser.get("/login/")
        response = browser.post(
            "/login/",
            data={
                "username": "admin",
                "password": "local-stack-password-1",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": f"{stack.url}/login/"},
        )
        assert response.status_code == 302, response.text[:300]
        return browser.cookies["sessionid"]


def database_hits(stack, needles: dict[str, str]) -> list[str]:
    db = stack.postgres
    with psycopg.connect(
        host=db.host, port=db.port, user=db.user, password=db.password, dbname=stack.database
    ) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb')"
        ).fetchall()
        assert len(columns) > 50
        hits = []
        for table, column in columns:
            for name, needle in needles.items():
                found = conn.execute(
                    f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, %s) > 0',
                    [needle],
                ).fetchone()[0]
                if found:
                    hits.append(f"{table}.{column}: {name} x{found}")
        return hits


def redis_values(url: str) -> list[tuple[str, bytes]]:
    """Every key of the stack's Redis database with its value(s) read by type, plus DUMP."""
    client = redis.Redis.from_url(url)
    values = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        parts: list[bytes] = [key]
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "list":
            parts += client.lrange(key, 0, -1)
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, entry in client.xrange(key):
                for field, value in entry.items():
                    parts += [field, value]
        parts.append(client.dump(key) or b"")
        values.append((key.decode(errors="replace"), b"\n".join(parts)))
    return values


def test_a_printed_secret_appears_nowhere(stack, tmp_path):
    needles = forms(SECRET)
    go = tmp_path / "go"
    messages: list[str] = []
    with stack.client() as client:
        assert (
            client.post("/api/v1/secrets/", json={"name": SECRET_NAME, "value": SECRET}).status_code
            == 201
        )
        create(client, LEAKY)
        started = execute(client, LEAKY["slug"], {"go": str(go)})
        cookie = session_cookie(stack)
        ws_url = stack.url.replace("http://", "ws://") + "/ws/live/"
        with connect(
            ws_url, additional_headers={"Origin": stack.url, "Cookie": f"sessionid={cookie}"}
        ) as socket:
            socket.send(json.dumps({"subscribe": "execution", "id": started["id"]}))
            socket.send(json.dumps({"subscribe": "executions"}))
            wait_until(
                lambda: messages.append(socket.recv(timeout=5)) or len(messages) >= 2,
                timeout=20,
                what="both subscriptions acknowledged",
            )
            go.touch()

            def finished() -> bool:
                with contextlib.suppress(TimeoutError):
                    messages.append(socket.recv(timeout=0.5))
                status = client.get(f"/api/v1/executions/{started['id']}/").json()["status"]
                return status in {"completed", "failed", "cancelled", "timed_out"}

            wait_until(finished, timeout=60, what="the leaky run to finish, with live messages")
        execution = wait_for_status(client, started["id"])
        [job] = execution["jobs"]
        base = f"/api/v1/executions/{started['id']}"
        responses = {
            path: client.get(path).text
            for path in (
                f"{base}/",
                f"{base}/log/",
                f"{base}/jobs/{job['id']}/output/",
                "/api/v1/executions/",
                "/api/v1/executions/export/",
                "/api/v1/executions/export/?format=csv",
                "/api/v1/secrets/",
                f"/api/v1/secrets/{SECRET_NAME}/",
                f"/api/v1/workflows/{LEAKY['slug']}/",
            )
        }
    assert execution["status"] == "completed", execution["error"]
    stdout = job["stdout"]
    for marker in ("raw=***", "b64=***", "url=***", "split=***", "done"):
        assert marker in stdout, stdout
    assert "err=***" in job["stderr"] and job["outputs"] == {"out": "***"}
    live_output = [m for m in messages if '"job.output"' in m]
    assert live_output, "the socket carried the job's output live"

    leaks = []
    for name, needle in needles.items():
        leaks += [f"api {path}: {name}" for path, text in responses.items() if needle in text]
        leaks += [f"websocket raw: {name}" for text in messages if needle in text]
        for log in stack.workdir.rglob("*.log"):
            if needle in log.read_text(errors="replace"):
                leaks.append(f"log {log.name}: {name}")
        for key, value in redis_values(stack.redis_url):
            if needle.encode() in value:
                leaks.append(f"redis {key}: {name}")
    leaks += database_hits(stack, needles)
    assert leaks == []
    assert re.search(r"\*\*\*", "".join(messages))
