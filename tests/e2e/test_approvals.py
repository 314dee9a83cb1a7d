"""Approval gates end to end: API decisions, rights, quorum, races, timeout across a control
worker restart, cancellation, and the e-mail link flow through a real SMTP server."""

from __future__ import annotations

import re
import sys
import threading

import httpx
import pytest

from tests.e2e.helpers import create, execute, node_statuses, wait_for_status
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def make_user(stack, name: str, groups: tuple[str, ...] = ()) -> str:
    """Create an approver (with an e-mail address and groups) and return an API token for it."""
    code = (
        "from django.contrib.auth.models import Group, User;"
        f"u, _ = User.objects.get_or_create(username={name!r}, "
        f"defaults={{'email': '{name}@example.test'}});"
        f"[Group.objects.get_or_create(name=g)[0].user_set.add(u) for g in {list(groups)!r}]"
    )
    stack.manage("shell", "-c", code)
    return stack.manage("issue_token", name, "--role", "approver")


def client_for(stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Token {token}"}, timeout=30)


def gate(slug: str, **node) -> dict:
    return {
        "slug": slug,
        "nodes": [
            {
                "id": "gate",
                "type": "approval",
                "message": "Proceed?",
                "on": {"approved": "yes", "rejected": "no"},
                **node,
            },
            {"id": "yes", "action": "shell", "with": {"command": "echo yes"}},
            {"id": "no", "action": "shell", "with": {"command": "echo no"}},
        ],
    }


def pending_request(client, execution_id: str) -> dict:
    paused = wait_for_status(client, execution_id, {"paused"})
    return paused["approvals"][0]


def test_reject_quorum_and_self_approval(stack):
    ann = make_user(stack, "ann", ("ops",))
    ben = make_user(stack, "ben", ("ops",))
    with (
        stack.client() as admin,
        client_for(stack, ann) as ann_client,
        client_for(stack, ben) as ben_client,
    ):
        create(admin, gate("e2e-gate-reject", approvers={"groups": ["ops"]}))
        rejected = execute(admin, "e2e-gate-reject")
        request = pending_request(admin, rejected["id"])
        assert (
            ann_client.post(
                f"/api/v1/approvals/{request['id']}/reject/", json={"note": "not now"}
            ).status_code
            == 200
        )
        done = wait_for_status(admin, rejected["id"])
        assert node_statuses(done)["no"] == "completed"
        assert node_statuses(done)["yes"] == "skipped"

        create(admin, gate("e2e-gate-quorum", approvers={"groups": ["ops"]}, quorum=2))
        started = ann_client.post("/api/v1/workflows/e2e-gate-quorum/execute/", json={}).json()
        request = pending_request(admin, started["id"])
        self_vote = ann_client.post(f"/api/v1/approvals/{request['id']}/approve/", json={})
        assert self_vote.status_code == 403 and "self-approval" in self_vote.json()["detail"]
        assert (
            ben_client.post(f"/api/v1/approvals/{request['id']}/approve/", json={}).status_code
            == 200
        )
        assert admin.get(f"/api/v1/executions/{started['id']}/").json()["status"] == "paused"
        assert (
            admin.post(
                f"/api/v1/approvals/{request['id']}/approve/", json={"note": "second"}
            ).status_code
            == 200
        )
        done = wait_for_status(admin, started["id"])
    assert node_statuses(done)["yes"] == "completed"
    output_votes = [vote["user"] for vote in done["approvals"][0]["votes"]]
    assert output_votes == ["ben", "admin"]


def test_racing_decisions_yield_one_outcome(stack):
    with stack.client() as admin:
        create(admin, gate("e2e-gate-race", allow_self_approval=True))
        started = execute(admin, "e2e-gate-race")
        request = pending_request(admin, started["id"])
        tokens = [make_user(stack, f"racer{i}", ("racers",)) for i in range(4)]
        stack.manage(
            "shell",
            "-c",
            (
                "from django.contrib.auth.models import Group, Permission;"
                "Group.objects.get(name='racers').permissions.add("
                "Permission.objects.get(codename='respond'))"
            ),
        )
        barrier = threading.Barrier(len(tokens))
        codes: list[int] = []

        def decide(index: int, token: str) -> None:
            with client_for(stack, token) as client:
                barrier.wait()
                action = "approve" if index % 2 else "reject"
                codes.append(
                    client.post(f"/api/v1/approvals/{request['id']}/{action}/", json={}).status_code
                )

        threads = [threading.Thread(target=decide, args=pair) for pair in enumerate(tokens)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = wait_for_status(admin, started["id"])
    assert sorted(codes) == [200, 409, 409, 409]
    ran = {job["node_id"] for job in done["jobs"]}
    assert len(ran) == 1 and ran <= {"yes", "no"}


def test_timeout_fires_even_when_the_control_worker_restarts(stack):
    control = next(p for p in stack.processes if p.name == "control")
    with stack.client() as admin:
        create(admin, gate("e2e-gate-timeout", timeout="2s"))
        started = execute(admin, "e2e-gate-timeout")
        pending_request(admin, started["id"])
        control.stop()
        stack.processes.remove(control)
        stack.spawn(
            "control-restarted",
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
                str(stack.workdir / "beat-schedule-2"),
                "--pool",
                "threads",
                "-c",
                "2",
                "-n",
                "control2@%h",
                "--loglevel",
                "INFO",
            ],
        )
        done = wait_for_status(admin, started["id"], timeout=60)
    assert node_statuses(done)["no"] == "completed"
    request = done["approvals"][0]
    assert request["status"] == "expired" and request["note"] == "timeout"
    assert any("timeout" in e["message"] for e in done["log"] if e["kind"] == "approval.expired")


def test_cancel_auto_rejects_pending_approvals(stack):
    with stack.client() as admin:
        create(admin, gate("e2e-gate-cancel"))
        started = execute(admin, "e2e-gate-cancel")
        request = pending_request(admin, started["id"])
        assert admin.post(f"/api/v1/executions/{started['id']}/cancel/", json={}).status_code == 200
        after = admin.get(f"/api/v1/approvals/{request['id']}/").json()
    assert after["status"] == "cancelled"


def test_email_link_decides_once(stack, mailbox):
    box, _ = mailbox
    make_user(stack, "mia")
    with stack.client() as admin:
        create(
            admin,
            gate(
                "e2e-gate-mail",
                approvers={"users": ["mia"]},
                message="Deploy {{ execution.workflow }}?",
            ),
        )
        started = execute(admin, "e2e-gate-mail")
        message = wait_until(
            lambda: next(
                (
                    m
                    for m in box.messages
                    if m["To"] == "mia@example.test" and "e2e-gate-mail" in m["Subject"]
                ),
                None,
            ),
            timeout=30,
            what="the approval e-mail",
        )
        body = message.get_content()
        assert "Deploy e2e-gate-mail?" in body
        approve_link = re.findall(r"(http://\S+/approvals/link/\S+/)", body)[0]
        with httpx.Client(timeout=30) as browser:
            page = browser.get(approve_link)
            assert page.status_code == 200 and "Deploy e2e-gate-mail?" in page.text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            decided = browser.post(
                approve_link,
                data={"decision": "approve", "csrfmiddlewaretoken": token},
                headers={"Referer": approve_link},
            )
            assert decided.status_code == 200 and "approved by mia" in decided.text
            assert browser.get(approve_link).status_code == 410
        done = wait_for_status(admin, started["id"])
    assert node_statuses(done)["yes"] == "completed"
    assert done["approvals"][0]["decided_via"] == "email"
