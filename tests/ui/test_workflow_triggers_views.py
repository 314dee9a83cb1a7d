"""The workflows pages' trigger views without a browser: the list's "Next run" column (cron
triggers fetched in one query, whatever the number of workflows) and the detail's Triggers
section (webhook URL with the request's host, secret names but never values, cron fires)."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orchestrator.models import Trigger
from orchestrator.roles import set_roles
from orchestrator.secret_store import save_secret
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

SHELL = {"id": "a", "action": "shell", "with": {"command": "true"}}


@pytest.fixture
def browser(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="ops", password="pw-ops-12345")
    set_roles(user, add=["operator"])
    client = Client()
    client.force_login(user)
    return client


def workflow(slug: str, *triggers: dict):
    return create_workflow({"slug": slug, "nodes": [SHELL], "triggers": list(triggers)})


def next_run_cell(html: str, slug: str) -> str:
    row = html.split(f'<tr data-slug="{slug}">', 1)[1].split("</tr>", 1)[0]
    return row.split('class="nowrap next-run">', 1)[1].split("</td>", 1)[0]


def list_queries(browser: Client) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/workflows/")
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_next_run_column_shows_the_soonest_cron_fire(browser):
    workflow(
        "nightly",
        {"type": "cron", "cron": "0 3 * * *", "timezone": "UTC"},
        {"type": "cron", "cron": "*/5 * * * *"},
        {"type": "webhook"},
    )
    workflow("hooked", {"type": "webhook"})
    html, _ = list_queries(browser)
    assert '<th scope="col" class="nowrap">Next run</th>' in html
    cell = next_run_cell(html, "nightly")
    stamp = cell.split('datetime="', 1)[1].split('"', 1)[0]
    fire = datetime.fromisoformat(stamp)
    assert fire.minute % 5 == 0  # the every-5-minutes trigger fires before 03:00
    assert next_run_cell(html, "hooked").strip() == '<span class="muted">—</span>'


def test_next_run_column_skips_inactive_triggers(browser):
    workflow("paused-cron", {"type": "cron", "cron": "0 3 * * *"})
    Trigger.objects.filter(workflow__slug="paused-cron").update(is_active=False)
    html, _ = list_queries(browser)
    assert "<time" not in next_run_cell(html, "paused-cron")


def test_next_run_column_queries_do_not_grow_with_workflows(browser):
    workflow("cron-0", {"type": "cron", "cron": "0 * * * *"})
    _, few = list_queries(browser)
    for n in range(1, 8):
        workflow(f"cron-{n}", {"type": "cron", "cron": f"{n} * * * *"}, {"type": "webhook"})
    html, many = list_queries(browser)
    assert many == few
    assert all("<time" in next_run_cell(html, f"cron-{n}") for n in range(8))


def test_detail_lists_triggers_with_url_secret_names_and_fires(browser, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "ui.example.test"]
    wf = workflow(
        "triggered",
        {"type": "webhook", "name": "gh", "secret": "{{ secrets.gh_hook }}"},
        {"type": "cron", "cron": "30 6 * * 1-5", "timezone": "Europe/Berlin"},
        {"type": "event", "event": "incident.*", "source": "pagerduty", "if": "{{ true }}"},
    )
    save_secret("gh_hook", "super-secret-value-123", workflow=wf)
    key = Trigger.objects.get(workflow=wf, kind="webhook").key
    response = browser.get("/workflows/triggered/", HTTP_HOST="ui.example.test")
    assert response.status_code == 200
    html = response.content.decode()
    section = html.split('id="triggers"', 1)[1]
    assert f"http://ui.example.test/hooks/{key}" in section
    assert "Regenerate URL" in section and "Copy" in section
    assert "gh_hook" in section and "stored · triggered" in section
    assert "super-secret-value-123" not in html
    assert section.count("<li><time") == 5
    assert "Europe/Berlin" in section
    assert "incident.*" in section and "pagerduty" in section
    assert "No deliveries yet." in section
