"""Pages follow the roles too: controls a role cannot use are marked `data-needs` and hidden by
the stylesheet for users whose `<body data-actions>` lacks the action, and a webhook's URL (its
key starts runs) is not in the page for viewers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from orchestrator.models import Trigger
from orchestrator.roles import set_roles
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db


def browser_for(django_user_model, role: str) -> Client:
    user = django_user_model.objects.create_user(role, password="pw-12345678")
    set_roles(user, add=[role])
    client = Client()
    client.force_login(user)
    return client


def body_actions(html: str) -> set[str]:
    return set(re.search(r'<body[^>]* data-actions="([^"]*)"', html).group(1).split())


def test_body_lists_the_users_actions(django_user_model):
    expected = {
        "viewer": {"read"},
        "operator": {"read", "operate"},
        "approver": {"read", "operate", "approve"},
        "admin": {"read", "operate", "approve", "admin"},
    }
    for role, actions in expected.items():
        html = browser_for(django_user_model, role).get("/workflows/").content.decode()
        assert body_actions(html) == actions, role


def test_operator_controls_are_marked_and_the_stylesheet_hides_them():
    css = Path(finders.find("ui/app.css")).read_text()
    assert 'body:not([data-actions~="operate"]) [data-needs="operate"]' in css
    assert "display: none !important" in css


def test_webhook_url_is_only_in_the_page_for_operators(django_user_model):
    create_workflow(
        {
            "slug": "hooked-page",
            "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
            "triggers": [{"type": "webhook"}],
        }
    )
    key = Trigger.objects.get(kind="webhook").key
    viewer = browser_for(django_user_model, "viewer").get("/workflows/hooked-page/")
    operator = browser_for(django_user_model, "operator").get("/workflows/hooked-page/")
    assert viewer.status_code == operator.status_code == 200
    assert key not in viewer.content.decode()
    assert "operator role is needed" in viewer.content.decode()
    assert key in operator.content.decode()
    page = operator.content.decode()
    for control in ('href="/workflows/hooked-page/edit/" data-needs="operate"', 'data-tab="run"'):
        assert control in page
    assert re.search(r'data-tab="run"[^>]*data-needs="operate"', page)
