"""The workflow pages' triggers in a real browser: the detail page shows a webhook trigger's
absolute URL (with a working Copy/Regenerate) and a cron trigger's next fires; the list shows
the next run."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import create
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e


def test_workflow_detail_shows_webhook_url_and_cron_fires(stack, login, page_errors):
    slug = f"ui-triggers-{uuid.uuid4().hex[:8]}"
    with stack.client() as client:
        create(
            client,
            {
                "slug": slug,
                "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
                "triggers": [
                    {"type": "webhook", "name": "inbound", "secret": "{{ secrets.ui_hook }}"},
                    {"type": "cron", "cron": "15 4 * * *", "timezone": "America/New_York"},
                ],
            },
        )
        triggers = client.get(f"/api/v1/workflows/{slug}/triggers/").json()["results"]
    key = next(t for t in triggers if t["kind"] == "webhook")["webhook"]["key"]
    page = login()
    page.goto(f"{stack.url}/workflows/{slug}/")
    section = page.locator("#triggers")
    url = section.locator(".webhook-url")
    expect(url).to_have_text(f"{stack.url}/hooks/{key}")
    expect(section.get_by_role("button", name="Copy", exact=True)).to_be_visible()
    expect(section).to_contain_text("ui_hook")
    expect(section).to_contain_text("not set")
    webhook = section.locator('.trigger-item[data-kind="webhook"]')
    expect(webhook).to_contain_text("No deliveries yet.")
    cron = section.locator('.trigger-item[data-kind="cron"]')
    expect(cron).to_contain_text("America/New_York")
    fires = cron.locator(".next-fires li time")
    expect(fires).to_have_count(5)
    first = fires.first.get_attribute("datetime")
    assert re.match(r"\d{4}-\d\d-\d\dT04:15:00-0[45]:00$", first), first
    screenshot(page, "workflow-triggers")

    # Setting the signing secret shows its value once, then only its name.
    form = section.locator(".secret-form")
    form.get_by_label("New value of ui_hook").fill("ui-hook-value-0001")
    form.get_by_role("button", name="Set ui_hook").click()
    expect(form.locator(".secret-once")).to_have_text("ui-hook-value-0001")
    expect(form.get_by_label("New value of ui_hook")).to_have_value("")

    # Regenerating (after confirming) shows the new URL in place.
    section.get_by_role("button", name="Regenerate URL").click()
    page.locator("#confirm-ok").click()
    expect(url).not_to_have_text(f"{stack.url}/hooks/{key}")
    expect(url).to_have_text(re.compile(rf"^{re.escape(stack.url)}/hooks/[\w-]{{20,}}$"))

    page.goto(f"{stack.url}/workflows/")
    expect(page.locator(f'tr[data-slug="{slug}"] .next-run time')).to_have_count(1)
    assert page_errors == []
