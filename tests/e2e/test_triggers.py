"""Triggers end to end on the real stack (uvicorn, control worker with beat, an agent): signed
webhooks, refused signatures and stale timestamps, idempotent redelivery, an Alertmanager
payload, event de-duplication, a cron tick fired by beat exactly once with two schedulers
running, and the real `switchyard` CLI following runs to their exit code."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.helpers import create, wait_for_status
from tests.support import wait_until

pytestmark = pytest.mark.e2e

HOOK_SECRET = "e2e-webhook-secret-value"


def signature(body: bytes, secret: str = HOOK_SECRET, timestamp: int | None = None) -> str:
    message = f"{timestamp}.".encode() + body if timestamp is not None else body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_of(client, slug: str) -> dict:
    triggers = client.get(f"/api/v1/workflows/{slug}/triggers/").json()["results"]
    return next(t for t in triggers if t["kind"] == "webhook")


def executions_of(client, slug: str) -> list[dict]:
    return client.get("/api/v1/executions/", params={"workflow": slug}).json()["results"]


def job_stdout(execution: dict, node_id: str) -> str:
    return next(job["stdout"] for job in execution["jobs"] if job["node_id"] == node_id)


@pytest.fixture(scope="module")
def signed_hook(stack):
    """A workflow whose webhook requires an HMAC signature with a stored secret."""
    with stack.client() as admin:
        response = admin.post(
            "/api/v1/secrets/", json={"name": "e2e_hook", "value": HOOK_SECRET, "scope": "global"}
        )
        assert response.status_code == 201, response.text
        create(
            admin,
            {
                "slug": "e2e-hook",
                "inputs": {"service": {"type": "string", "required": True}},
                "nodes": [
                    {
                        "id": "deploy",
                        "action": "shell",
                        "with": {"command": "echo deploying {{ inputs.service | shell_quote }}"},
                    }
                ],
                "triggers": [
                    {
                        "type": "webhook",
                        "secret": "{{ secrets.e2e_hook }}",
                        "inputs": {"service": "{{ trigger.data.service }}"},
                    }
                ],
            },
        )
        return webhook_of(admin, "e2e-hook")


def test_signed_webhook_starts_a_run_on_the_agent(stack, signed_hook):
    body = json.dumps({"variables": {"service": "web"}}).encode()
    response = httpx.post(
        signed_hook["webhook"]["url"],
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Switchyard-Signature": signature(body),
            "X-Request-Id": "e2e-req-1",
        },
    )
    assert response.status_code == 201, response.text
    with stack.client() as admin:
        done = wait_for_status(admin, response.json()["execution"]["id"])
        assert done["status"] == "completed", done
        assert job_stdout(done, "deploy").strip() == "deploying web"
        trigger = done["trigger"]
        assert trigger["kind"] == "webhook"
        assert trigger["webhook"] == signed_hook["webhook"]["key"]
        assert trigger["request_id"] == "e2e-req-1"
        assert trigger["data"] == {"service": "web"}
        assert done["inputs"] == {"service": "web"}


def test_bad_signature_is_401_and_no_execution_is_stored(stack, signed_hook):
    with stack.client() as admin:
        before = {e["id"] for e in executions_of(admin, "e2e-hook")}
        body = b'{"variables": {"service": "evil"}}'
        response = httpx.post(
            signed_hook["webhook"]["url"],
            content=body,
            headers={"X-Switchyard-Signature": signature(body, "wrong-secret")},
        )
        assert response.status_code == 401
        assert {e["id"] for e in executions_of(admin, "e2e-hook")} == before
        deliveries = admin.get(
            f"/api/v1/workflows/e2e-hook/triggers/{signed_hook['id']}/deliveries/"
        ).json()["results"]
        refused = next(d for d in deliveries if d["id"] == response.json()["delivery_id"])
        assert (refused["signature"], refused["status_code"], refused["execution"]) == (
            "invalid",
            401,
            None,
        )
        assert "x-switchyard-signature" not in {
            k.lower() for k, v in refused["headers"].items() if v != "[redacted]"
        }


def test_replayed_idempotency_key_returns_the_same_execution(stack, signed_hook):
    body = b'{"variables": {"service": "api"}}'
    headers = {"X-Switchyard-Signature": signature(body), "Idempotency-Key": "e2e-once"}
    first = httpx.post(signed_hook["webhook"]["url"], content=body, headers=headers)
    again = httpx.post(signed_hook["webhook"]["url"], content=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["execution"]["id"] == first.json()["execution"]["id"]
    with stack.client() as admin:
        runs = [
            e
            for e in executions_of(admin, "e2e-hook")
            if e["trigger"].get("idempotency_key") == "e2e-once"
        ]
        assert [e["id"] for e in runs] == [first.json()["execution"]["id"]]


def test_stale_timestamp_is_refused(stack, signed_hook):
    body = b'{"variables": {"service": "old"}}'
    stamp = int(time.time()) - 600
    response = httpx.post(
        signed_hook["webhook"]["url"],
        content=body,
        headers={
            "X-Switchyard-Signature": signature(body, timestamp=stamp),
            "X-Switchyard-Timestamp": str(stamp),
        },
    )
    assert response.status_code == 401
    assert "replay" in response.json()["detail"]
    fresh = int(time.time())
    accepted = httpx.post(
        signed_hook["webhook"]["url"],
        content=body,
        headers={
            "X-Switchyard-Signature": signature(body, timestamp=fresh),
            "X-Switchyard-Timestamp": str(fresh),
        },
    )
    assert accepted.status_code == 201, accepted.text


def test_oversized_and_non_json_bodies_are_refused_over_http(stack, signed_hook):
    url = signed_hook["webhook"]["url"]
    big = b'{"pad": "' + b"x" * (1 << 20) + b'"}'
    assert httpx.post(url, content=big).status_code == 413

    def chunked():  # no Content-Length: the limit applies while reading
        for _ in range(17):
            yield b"x" * 65536

    assert httpx.post(url, content=chunked()).status_code == 413
    body = b"<xml/>"
    response = httpx.post(url, content=body, headers={"X-Switchyard-Signature": signature(body)})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_alertmanager_payload_starts_a_run_with_its_labels(stack):
    with stack.client() as admin:
        create(
            admin,
            {
                "slug": "e2e-alerts",
                "nodes": [
                    {
                        "id": "triage",
                        "action": "shell",
                        "with": {
                            "command": (
                                "echo {{ trigger.data.alerts[0].labels.alertname | shell_quote }}"
                                " on {{ trigger.data.alerts[0].labels.instance | shell_quote }}:"
                                " {{ trigger.data.alerts[0].annotations.summary | shell_quote }}"
                            )
                        },
                    }
                ],
                "triggers": [{"type": "webhook", "if": "{{ trigger.data.status == 'firing' }}"}],
            },
        )
        hook = webhook_of(admin, "e2e-alerts")
        payload = {
            "version": "4",
            "groupKey": '{}:{alertname="HighLoad"}',
            "status": "firing",
            "receiver": "switchyard",
            "groupLabels": {"alertname": "HighLoad"},
            "commonLabels": {"alertname": "HighLoad"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "HighLoad", "instance": "web-7"},
                    "annotations": {"summary": "load 12"},
                    "startsAt": "2024-01-01T00:00:00Z",
                    "fingerprint": "f1",
                }
            ],
        }
        response = httpx.post(hook["webhook"]["url"], json=payload)
        assert response.status_code == 201, response.text
        done = wait_for_status(admin, response.json()["execution"]["id"])
        assert done["status"] == "completed", done
        assert job_stdout(done, "triage").strip() == "HighLoad on web-7: load 12"
        assert done["trigger"]["format"] == "alertmanager"
        resolved = httpx.post(hook["webhook"]["url"], json={**payload, "status": "resolved"})
        assert resolved.status_code == 200
        assert resolved.json()["outcome"] == "filtered"


def test_event_dedup_key_starts_one_run(stack):
    with stack.client() as admin:
        create(
            admin,
            {
                "slug": "e2e-incident",
                "nodes": [
                    {
                        "id": "page",
                        "action": "shell",
                        "with": {"command": "echo paging for {{ event.data.title | shell_quote }}"},
                    }
                ],
                "triggers": [
                    {
                        "type": "event",
                        "event": "incident.created",
                        "if": "{{ event.data.severity == 'critical' }}",
                    }
                ],
            },
        )
        body = {
            "type": "incident.created",
            "source": "e2e",
            "dedup_key": "e2e-incident-1",
            "data": {"severity": "critical", "title": "db down", "id": "INC-1"},
        }
        first = admin.post("/api/v1/events/", json=body)
        again = admin.post("/api/v1/events/", json=body)
        assert first.status_code == 201, first.text
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        [execution] = first.json()["executions"]
        assert [e["id"] for e in again.json()["executions"]] == [execution["id"]]
        done = wait_for_status(admin, execution["id"])
        assert done["status"] == "completed", done
        assert job_stdout(done, "page").strip() == "paging for db down"
        assert done["trigger"]["incident_id"] == "INC-1"
        assert done["trigger"]["event_type"] == "incident.created"
        assert [e["id"] for e in executions_of(admin, "e2e-incident")] == [execution["id"]]


FIRE_TASK_DONE = re.compile(r"Task orchestrator\.tasks\.fire_cron_triggers\[[^\]]+\] succeeded")


def fire_task_completions(stack) -> int:
    """How many `fire_cron_triggers` beat tasks the control workers have finished so far."""
    return sum(
        len(FIRE_TASK_DONE.findall(process.log.read_text(errors="replace")))
        for process in stack.processes
        if process.log.exists()
    )


def test_beat_fires_a_due_cron_tick_once_with_two_schedulers(stack):
    """A second control worker with its own beat runs beside the first. The trigger's cursor is
    moved back past a tick (as after downtime) with `misfire: run_once`: the tick fires once,
    however many firing tasks the two schedulers run."""
    second = stack.spawn(
        "control-cron",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "orchestrator.celery_app",
            "worker",
            "-Q",
            "control",
            "--beat",
            "--schedule",
            str(stack.workdir / "beat-schedule-cron"),
            "--pool",
            "threads",
            "-c",
            "2",
            "-n",
            "control-cron@%h",
            "--loglevel",
            "INFO",
        ],
    )
    try:
        with stack.client() as admin:
            create(
                admin,
                {
                    "slug": "e2e-cron",
                    "nodes": [
                        {
                            "id": "tick",
                            "action": "shell",
                            "with": {"command": "echo tick {{ trigger.scheduled_at }}"},
                        }
                    ],
                    "triggers": [{"type": "cron", "cron": "0 0 1 1 *", "misfire": "run_once"}],
                },
            )
            trigger = admin.get("/api/v1/workflows/e2e-cron/triggers/").json()["results"][0]
            year = datetime.now(UTC).year
            with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
                conn.execute(
                    "UPDATE orchestrator_trigger SET cron_cursor = %s WHERE id = %s",
                    (datetime(year - 1, 12, 31, tzinfo=UTC), trigger["id"]),
                )
            seen = fire_task_completions(stack)
            [started] = wait_until(
                lambda: executions_of(admin, "e2e-cron"), timeout=60, what="the cron run"
            )
            # Let both schedulers run several more firing tasks: none may fire the tick again.
            wait_until(
                lambda: fire_task_completions(stack) >= seen + 6,
                timeout=60,
                what="more firing tasks from both beats",
            )
            assert [e["id"] for e in executions_of(admin, "e2e-cron")] == [started["id"]]
            done = wait_for_status(admin, started["id"])
            assert done["status"] == "completed", done
            assert done["trigger"]["kind"] == "cron"
            assert done["trigger"]["scheduled_at"] == f"{year}-01-01T00:00:00+00:00"
            fires = admin.get("/api/v1/workflows/e2e-cron/triggers/").json()["results"][0]
            assert [f["execution"] for f in fires["cron"]["recent_fires"]] == [started["id"]]
            assert fires["cron"]["next_fires"][0] == f"{year + 1}-01-01T00:00:00+00:00"
    finally:
        second.stop()
        stack.processes.remove(second)


def switchyard_cli() -> list[str]:
    script = Path(sys.executable).with_name("switchyard")
    assert script.exists(), "the `switchyard` console script is installed by `pip install -e .`"
    return [str(script)]


def run_cli(stack, tmp_path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in stack.env.items() if not k.startswith("SWITCHYARD_")}
    env |= {"HOME": str(tmp_path), "SWITCHYARD_URL": stack.url, "SWITCHYARD_TOKEN": stack.token}
    return subprocess.run(
        [*switchyard_cli(), *argv], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_run_follow_exit_codes(stack, tmp_path):
    with stack.client() as admin:
        create(
            admin,
            {
                "slug": "e2e-cli-ok",
                "inputs": {"who": {"type": "string", "required": True}},
                "nodes": [
                    {
                        "id": "greet",
                        "action": "shell",
                        "with": {"command": "echo hello {{ inputs.who | shell_quote }}; echo bye"},
                        "on": {"success": "after"},
                    },
                    {"id": "after", "action": "shell", "with": {"command": "echo done >&2"}},
                ],
            },
        )
        create(
            admin,
            {
                "slug": "e2e-cli-fail",
                "nodes": [
                    {
                        "id": "boom",
                        "action": "shell",
                        "with": {"command": "echo about to fail; exit 3"},
                    }
                ],
            },
        )
    ok = run_cli(stack, tmp_path, "run", "e2e-cli-ok", "--input", "who=world", "--follow")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert "[greet] hello world" in lines
    assert "[greet] bye" in lines
    assert "[after] done" in ok.stderr.splitlines()
    assert any(line.startswith("[greet#1] running") for line in lines)
    assert any(line.startswith("[greet#1] completed (exit 0") for line in lines)
    assert lines.index("[greet] hello world") < next(
        i for i, line in enumerate(lines) if line.startswith("[after#1] completed")
    )
    assert lines[-1].startswith("execution ") and " completed in " in lines[-1]
    execution_id = lines[0].split()[1]
    with stack.client() as admin:
        trigger = admin.get(f"/api/v1/executions/{execution_id}/").json()["trigger"]
    assert trigger == {"kind": "manual", "user": "admin", "channel": "cli"}

    failed = run_cli(stack, tmp_path, "run", "e2e-cli-fail", "--follow")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "[boom] about to fail" in failed.stdout.splitlines()
    assert any(line.startswith("[boom#1] failed (exit 3") for line in failed.stdout.splitlines())
    assert " failed" in failed.stdout.splitlines()[-1]
    assert "error:" in failed.stderr

    rerun = run_cli(stack, tmp_path, "executions", "rerun", execution_id, "--follow")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "[greet] hello world" in rerun.stdout.splitlines()

    missing = run_cli(stack, tmp_path, "run", "e2e-cli-ok", "--follow")
    assert missing.returncode == 2
    assert "inputs.who: required" in missing.stderr
