"""Approval notifications, signed decision links, escalation, audit and 'waiting on me'."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from approvals.models import ApprovalAudit, ApprovalRequest
from executions.advancing import start_execution
from executions.models import Job
from executions.sweeper import sweep
from orchestrator.roles import set_roles
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

GATE = {
    "slug": "notify-gate",
    "inputs": {"service": {"type": "string", "default": "api"}},
    "nodes": [
        {
            "id": "gate",
            "type": "approval",
            "message": "Restart {{ inputs.service }}?",
            "approvers": {"users": ["alice"], "groups": ["sre"]},
            "timeout": "1h",
            "context": {"service": "{{ inputs.service }}"},
            "escalate": {"after": "10m", "to": {"groups": ["leads"]}},
            "on": {"approved": "go", "rejected": "stop"},
        },
        {"id": "go", "action": "shell", "with": {"command": "true"}},
        {"id": "stop", "action": "shell", "with": {"command": "true"}},
    ],
}


@pytest.fixture
def people(django_user_model):
    users = {
        name: django_user_model.objects.create_user(name, f"{name}@example.test", "pw-12345678")
        for name in ("alice", "sam", "lee", "starter", "nobody")
    }
    for user in users.values():
        set_roles(user, add=["approver"])
    Group.objects.create(name="sre").user_set.add(users["sam"])
    Group.objects.create(name="leads").user_set.add(users["lee"])
    return users


def links_in(message) -> list[str]:
    return re.findall(r"http://[^\s]+/approvals/link/[^\s]+/", message.body)


def start(people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        execution = start_execution(create_workflow(GATE), user=people["starter"])
    return execution, ApprovalRequest.objects.get(execution=execution)


def test_approvers_get_mail_with_context_and_personal_links(
    people, django_capture_on_commit_callbacks
):
    _, request = start(people, django_capture_on_commit_callbacks)
    recipients = sorted(address for m in mail.outbox for address in m.to)
    assert recipients == ["alice@example.test", "sam@example.test"]
    message = mail.outbox[0]
    assert "Restart api?" in message.body and "service: api" in message.body
    assert "notify-gate" in message.subject and len(links_in(message)) == 2
    assert ApprovalAudit.objects.filter(request=request, action="notified").exists()
    assert request.context == {"service": "api"}


def test_signed_link_confirms_on_get_decides_on_post_and_is_single_use(
    people, django_capture_on_commit_callbacks
):
    execution, request = start(people, django_capture_on_commit_callbacks)
    alice_mail = next(m for m in mail.outbox if m.to == ["alice@example.test"])
    approve_url = links_in(alice_mail)[0].split("127.0.0.1:8000", 1)[-1]
    browser = Client(enforce_csrf_checks=True)
    shown = browser.get(approve_url)
    assert shown.status_code == 200 and b"Restart api?" in shown.content
    request.refresh_from_db()
    assert request.status == "pending"
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', shown.content).group(1)
    with django_capture_on_commit_callbacks(execute=True):
        decided = browser.post(
            approve_url,
            {"decision": "approve", "note": "ok", "csrfmiddlewaretoken": token.decode()},
        )
    assert decided.status_code == 200 and b"approved by alice" in decided.content
    request.refresh_from_db()
    assert (request.status, request.decided_via, request.decided_by.username) == (
        "approved",
        "email",
        "alice",
    )
    execution.refresh_from_db()
    assert execution.nodes["gate"]["output"]["respondedVia"] == "email"
    assert Job.objects.filter(execution=execution, node_id="go").exists()
    assert browser.get(approve_url).status_code == 410
    assert Client().get("/approvals/link/forged-token/").status_code == 404


def test_expired_link_and_refused_user(people, django_capture_on_commit_callbacks):
    from approvals.notifications import make_link

    _, request = start(people, django_capture_on_commit_callbacks)
    stranger = make_link(request, user=people["nobody"], via="email")
    page = Client().get(stranger)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    client = Client()
    client.get(stranger)
    refused = client.post(stranger, {"decision": "approve"})
    assert refused.status_code == 403 and token
    request.refresh_from_db()
    assert request.status == "pending"
    old = make_link(request, user=people["alice"], via="email")
    request.links.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(old).status_code == 410


def test_chat_links_require_login(people, django_capture_on_commit_callbacks):
    from approvals.notifications import make_link

    _, request = start(people, django_capture_on_commit_callbacks)
    url = make_link(request, via="chat")
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    client = Client()
    client.force_login(people["sam"])
    assert client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"decision": "reject"})
    request.refresh_from_db()
    assert (request.status, request.decided_via, request.decided_by.username) == (
        "rejected",
        "chat",
        "sam",
    )


def test_escalation_widens_approvers_and_notifies_the_second_group(
    people, django_capture_on_commit_callbacks
):
    execution, request = start(people, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    assert sweep(timezone.now() + timedelta(minutes=5))["approvals_escalated"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep(timezone.now() + timedelta(minutes=11))["approvals_escalated"] == 1
    request.refresh_from_db()
    assert "leads" in request.approvers["groups"] and request.escalated_at
    assert [m.to for m in mail.outbox] == [["lee@example.test"]]
    assert "escalated" in mail.outbox[0].subject.lower()
    assert execution.events.filter(kind="approval.escalated").exists()
    actions = list(ApprovalAudit.objects.filter(request=request).values_list("action", flat=True))
    assert actions[:1] == ["requested"] and "escalated" in actions


def test_waiting_on_me_and_web_channel(api, people, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    _, request = start(people, django_capture_on_commit_callbacks)
    sam = APIClient()
    sam.force_login(people["sam"])
    mine = sam.get("/api/v1/approvals/?mine=1").json()["results"]
    assert [item["id"] for item in mine] == [request.pk]
    nobody = APIClient()
    nobody.force_login(people["nobody"])
    assert nobody.get("/api/v1/approvals/?mine=1").json()["results"] == []
    csrf_client = APIClient(enforce_csrf_checks=False)
    csrf_client.force_login(people["sam"])
    with django_capture_on_commit_callbacks(execute=True):
        csrf_client.post(f"/api/v1/approvals/{request.pk}/approve/", {}, format="json")
    request.refresh_from_db()
    assert request.decided_via == "web"
    assert list(
        ApprovalAudit.objects.filter(request=request, action="approve").values_list(
            "via", flat=True
        )
    ) == ["web"]
