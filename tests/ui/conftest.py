"""Browser tests of the web UI: Debian's Chromium driven by Playwright against the real stack
(uvicorn + control worker + agent, from `tests/stack_fixtures.py`). Screenshots go to
`var/screenshots/`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

# The real stack (and what it depends on) and the hook that attaches its logs to failures.

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "local-stack-password-1"  # DJANGO_SUPERUSER_PASSWORD of the local stack

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Browser:
    """One Chromium per test module: Playwright's sync API runs an event loop on this thread,
    so it must be gone before tests that use Django's ORM or async_to_sync here."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make bootstrap` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


@pytest.fixture
def login(browser, stack, page_errors):
    """`login(username)` -> a signed-in page (1280x900, light scheme) that records script errors
    and CSP violations in `page_errors`."""
    contexts = []

    def sign_in(username: str = "admin", color_scheme: str = "light") -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, color_scheme=color_scheme
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: page_errors.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda message: (
                page_errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        page.on("dialog", lambda dialog: page_errors.append(f"dialog: {dialog.message}"))
        page.goto(f"{stack.url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/executions/$"))
        return page

    yield sign_in
    for context in contexts:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
