"""The Analytics page in Chromium: Chart.js charts drawn from the analytics API under the CSP,
in light and dark, with the flaky-steps table linking to its evidence runs."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import run
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e

SOME_POINTS = re.compile(r"^[1-9]\d*$")
CHARTS = ["chart-per-day", "chart-top", "chart-trend", "chart-agents", "chart-pools"]

# How many pixels of a canvas are not transparent (a drawn chart has thousands).
PAINTED = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted += 1;
  return painted;
}"""


def charts_are_drawn(page: Page) -> None:
    expect(page.locator("#analytics-stats")).to_have_attribute("data-state", "loaded")
    for chart in CHARTS:
        canvas = page.locator(f"#{chart}")
        expect(canvas).to_have_attribute("data-points", SOME_POINTS)
        assert page.evaluate(PAINTED, chart) > 500, chart


def test_analytics_page_draws_its_charts_and_links_flaky_evidence(stack, login, page_errors):
    slug = f"ui-analytics-{uuid.uuid4().hex[:8]}"
    definition = {
        "slug": slug,
        "nodes": [
            {
                "id": "flappy",
                "action": "shell",
                "retries": 1,
                "with": {"command": '[ "$SWITCHYARD_ATTEMPT" = 1 ] && exit 1; echo ok'},
            }
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed"

    page = login()
    page.goto(f"{stack.url}/analytics/?workflow={slug}")
    charts_are_drawn(page)
    expect(page.locator("#stat-total")).to_have_text("1")
    expect(page.locator("#stat-success")).to_have_text("100.0%")
    flaky = page.locator("#flaky-rows tr").filter(has_text="flappy")
    expect(flaky).to_contain_text(slug)
    expect(flaky.locator(f'a[href="/executions/{execution["id"]}/"]')).to_be_visible()
    expect(page.locator("#top-rows")).to_contain_text(slug)
    screenshot(page, "analytics-light")

    dark = login(color_scheme="dark")
    dark.goto(f"{stack.url}/analytics/")
    charts_are_drawn(dark)
    legend_colour = dark.evaluate(
        "() => window.Chart.getChart('chart-per-day').options.plugins.legend.labels.color"
    )
    text_colour = dark.evaluate(
        "() => getComputedStyle(document.documentElement).getPropertyValue('--text').trim()"
    )
    assert legend_colour == text_colour and legend_colour.lower() != "#1a2230"
    screenshot(dark, "analytics-dark")
    assert page_errors == []


def test_bad_window_shows_the_api_error(stack, login, page_errors):
    page = login()
    page.goto(f"{stack.url}/analytics/?since=2026-02-01&until=2026-01-01")
    expect(page.locator("#analytics-stats")).to_have_attribute("data-state", "error")
    expect(page.locator("#analytics-error")).to_contain_text("until")
    # The failed fetch (HTTP 400) is logged by the browser; nothing else may be.
    assert all("400" in error for error in page_errors), page_errors
