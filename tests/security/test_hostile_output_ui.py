"""Hostile job output viewed in headless Chromium on the real stack: HTML and script in plain
text and inside ANSI/OSC sequences, OSC 8 hyperlinks, OSC 52 clipboard writes, NUL, and a 100 MB
single line. No script runs (a canary global stays unset), the page carries a CSP without
`unsafe-inline`, nothing becomes an element, the JS heap stays bounded and the truncation is
marked."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import create, execute, wait_for_status

pytestmark = pytest.mark.e2e

HOSTILE = "\n".join(
    [
        "printf '<script>window.__canary=1</script>\\n'",
        "printf '\\033[31m<img src=x onerror=\"window.__canary=2\">\\033[0m red\\n'",
        "printf 'title:\\033]0;<script>window.__canary=3</script>\\007:kept\\n'",
        "printf 'link:\\033]8;;javascript:window.__canary=4\\033\\\\click me\\033]8;;\\033\\\\\\n'",
        "printf 'clip:\\033]52;c;%s\\007:after\\n' \"$(printf 'rm -rf ~' | base64)\"",
        "printf 'csi:\\033[<script>m:after\\n'",
        "printf 'nul:\\000:end\\n'",
        "printf '<iframe src=javascript:parent.__canary=5></iframe>\\n'",
        "head -c 100000000 /dev/zero | tr '\\000' 'A'",
        "echo",
        "echo after-the-big-line",
    ]
)
HEAP_LIMIT = 256 * 1024 * 1024


def test_hostile_output_is_inert_bounded_and_marked_truncated(stack, login, page_errors):
    definition = {
        "slug": "sec-hostile-output",
        "nodes": [
            {"id": "paint", "action": "shell", "timeout": "5m", "with": {"command": HOSTILE}}
        ],
    }
    with stack.client() as client:
        create(client, definition)
        execution = wait_for_status(client, execute(client, definition["slug"])["id"], timeout=240)
    assert execution["status"] == "completed", execution["error"]
    page = login()
    response = page.goto(f"{stack.url}/executions/{execution['id']}/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "object-src 'none'" in policy or "default-src 'self'" in policy
    terminal = page.locator("#terminal")
    expect(terminal).to_contain_text("output truncated", timeout=60_000)
    expect(terminal).to_contain_text("<script>window.__canary=1</script>")
    expect(terminal).to_contain_text('<img src=x onerror="window.__canary=2"> red')
    expect(terminal).to_contain_text("title::kept")
    expect(terminal).to_contain_text("link:click me")
    expect(terminal).to_contain_text("clip::after")
    expect(terminal).to_contain_text("nul:\ufffd:end")
    expect(terminal).to_contain_text("<iframe src=javascript:parent.__canary=5></iframe>")
    text = terminal.inner_text()
    assert "]52;" not in text and "]8;;" not in text and "]0;" not in text
    assert "after-the-big-line" not in text
    assert terminal.locator("script, img, iframe, a, object, embed").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.evaluate("typeof window.__canary") == "undefined"
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    assert metrics["JSHeapUsedSize"] < HEAP_LIMIT, metrics["JSHeapUsedSize"]
    assert page_errors == []
