"""The UI's Django views without a browser: sign-in requirements, the JSON endpoints pages use
to catch up (`state`, `events?after=`), saved views, and the security headers."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from executions.models import Execution, ExecutionEvent, Job
from executions.ui_models import SavedView
from orchestrator.models import Workflow, WorkflowVersion
from orchestrator.roles import set_roles

pytestmark = pytest.mark.django_db

PAGES = ["/executions/", "/approvals/", "/workflows/", "/agents/", "/analytics/", "/settings/"]


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user(username="ops", password="pw-ops-12345")
    set_roles(user, add=["operator"])
    return user


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def execution() -> Execution:
    workflow = Workflow.objects.create(slug="ui-views", name="UI views")
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=1,
        definition={
            "slug": "ui-views",
            "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
        },
    )
    workflow.published_version = version
    workflow.latest_version_number = 1
    workflow.save()
    execution = Execution.objects.create(workflow=workflow, version=version, status="running")
    Job.objects.create(execution=execution, node_id="a", action="shell", stdout="big output")
    for n in range(3):
        ExecutionEvent.objects.create(
            execution=execution, timestamp=timezone.now(), kind=f"k{n}", message=f"m{n}"
        )
    return execution


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_session(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/login/?next={path}")


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_with_a_strict_policy(browser, execution, path):
    response = browser.get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert b"<script>" not in response.content  # data travels in json_script blocks only
    assert b" onclick=" not in response.content


def test_root_redirects_to_executions(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/executions/"


def test_detail_state_and_events_after_seq(browser, client, execution):
    page = browser.get(f"/executions/{execution.pk}/")
    assert page.status_code == 200
    assert b'id="boot" type="application/json"' in page.content
    state = browser.get(f"/executions/{execution.pk}/state/").json()
    assert state["status"] == "running"
    assert [job["node_id"] for job in state["jobs"]] == ["a"]
    assert "stdout" not in state["jobs"][0] and "log" not in state
    events = list(execution.events.order_by("id"))
    after = browser.get(f"/executions/{execution.pk}/events/?after={events[0].pk}").json()
    assert [e["kind"] for e in after["events"]] == ["k1", "k2"]
    assert after["seq"] == events[-1].pk and after["more"] is False
    assert browser.get(f"/executions/{execution.pk}/events/?after=x").status_code == 400
    assert browser.get("/executions/not-a-uuid/state/").status_code == 404
    assert client.get(f"/executions/{execution.pk}/state/").status_code == 401


def test_list_page_reuses_the_api_filters(browser, execution):
    response = browser.get("/executions/?status=running&workflow=ui-views")
    assert response.status_code == 200
    assert str(execution.pk).encode() in response.content
    bad = browser.get("/executions/?status=nope")
    assert bad.status_code == 200
    assert b"unknown status nope" in bad.content


def test_saved_views_are_per_user(browser, client, user, django_user_model):
    created = browser.post(
        "/executions/views/",
        data={"name": "Failed today", "query": "status=failed"},
        content_type="application/json",
    )
    assert created.status_code == 201
    view_id = created.json()["id"]
    again = browser.post(
        "/executions/views/",
        data={"name": "Failed today", "query": "status=failed,timed_out"},
        content_type="application/json",
    )
    assert again.json()["id"] == view_id
    assert SavedView.objects.get(pk=view_id).query == "status=failed,timed_out"
    assert b"Failed today" in browser.get("/settings/").content
    other = Client()
    stranger = django_user_model.objects.create_user(username="x", password="pw-x-123456")
    set_roles(stranger, add=["viewer"])
    other.force_login(stranger)
    assert other.post(f"/executions/views/{view_id}/delete/").status_code == 404
    assert (
        client.post("/executions/views/", data={}, content_type="application/json").status_code
        == 401
    )
    assert browser.post(f"/executions/views/{view_id}/delete/").status_code == 200
    assert not SavedView.objects.filter(user=user).exists()


def test_workflow_pages(browser, execution):
    WorkflowVersion.objects.create(
        workflow=execution.workflow,
        number=2,
        definition={
            "slug": "ui-views",
            "nodes": [{"id": "b", "action": "shell", "with": {"command": "true"}}],
        },
    )
    detail = browser.get("/workflows/ui-views/?tab=versions&a=1&b=2")
    assert detail.status_code == 200
    assert b'class="d-del"' in detail.content and b'class="d-add"' in detail.content
    assert browser.get("/workflows/ui-views/edit/").status_code == 200
    assert browser.get("/workflows/new/").status_code == 200
    assert browser.get("/workflows/missing/").status_code == 404
