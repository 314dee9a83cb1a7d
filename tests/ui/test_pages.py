"""The web UI in a real browser against the real stack: live list and detail pages, streamed
output, approvals, filters in the URL, safe rendering of job output, reconnects, screenshots."""

from __future__ import annotations

import itertools
import re
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import create, execute, wait_for_status
from tests.ui.conftest import screenshot

pytestmark = pytest.mark.e2e

ANSI_AND_HTML = (
    r"printf '\033[1;32mgreen bold\033[0m plain \033[31mred\033[0m\033]0;title\007 after\n'; "
    "echo '<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> <b>b</b>'; "
    "echo to-stderr >&2"
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def waiting_job(slug: str, flag, before: str = "echo started") -> dict:
    """One shell job that prints, then waits for `flag` to exist before it ends."""
    return {
        "slug": slug,
        "nodes": [
            {
                "id": "wait_for_flag",
                "action": "shell",
                "timeout": "2m",
                "with": {
                    "command": (
                        f"{before}; while [ ! -f {flag} ]; do sleep 0.1; done; echo flag-seen"
                    )
                },
            }
        ],
    }


def open_live(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "open")


def row(page: Page, execution_id: str):
    return page.locator(f'#executions-body tr[data-id="{execution_id}"]')


def test_new_run_appears_live_in_the_list_and_completes(stack, login, tmp_path, page_errors):
    flag = tmp_path / "list.flag"
    slug = unique("ui-list")
    with stack.client() as client:
        create(client, waiting_job(slug, flag))
        page = login()
        open_live(page, f"{stack.url}/executions/")
        started = execute(client, slug)
        new_row = row(page, started["id"])
        expect(new_row).to_be_visible()
        expect(new_row.locator(".badge")).to_have_text("running")
        expect(new_row).to_contain_text(slug)
        expect(new_row).to_contain_text("manual")
        flag.touch()
        expect(new_row.locator(".badge")).to_have_text("completed")
        expect(new_row).to_contain_text("1/1")
        screenshot(page, "executions-list-light")
        page.emulate_media(color_scheme="dark")
        screenshot(page, "executions-list-dark")
    assert page_errors == []


def test_detail_streams_output_before_the_job_ends(stack, login, tmp_path, page_errors):
    flag = tmp_path / "detail.flag"
    slug = unique("ui-stream")
    with stack.client() as client:
        create(client, waiting_job(slug, flag, before="echo first-line; echo second-line"))
        execution = execute(client, slug)
        page = login()
        open_live(page, f"{stack.url}/executions/{execution['id']}/")
        terminal = page.locator("#terminal")
        expect(terminal).to_contain_text("first-line")
        expect(terminal).to_contain_text("second-line")
        # The job is still running: it cannot end before the flag exists.
        body = client.get(f"/api/v1/executions/{execution['id']}/").json()
        assert [job["status"] for job in body["jobs"]] == ["running"]
        expect(page.locator("#status-word")).to_have_text("running")
        screenshot(page, "execution-detail-running")
        flag.touch()
        expect(terminal).to_contain_text("flag-seen")
        expect(page.locator("#status-word")).to_have_text("completed")
        expect(page.locator('#timeline-body tr[data-node="wait_for_flag"]')).to_have_attribute(
            "data-status", "completed"
        )
        expect(page.locator("#count-log")).not_to_have_text("0")
        screenshot(page, "execution-detail-light")
        page.emulate_media(color_scheme="dark")
        screenshot(page, "execution-detail-dark")
        page.get_by_role("tab", name="Graph").click()
        expect(page.locator('#graph g.graph-node[data-node="wait_for_flag"]')).to_have_class(
            re.compile(r"st-completed")
        )
        page.get_by_role("tab", name="Log").click()
        expect(page.locator("#log-list")).to_contain_text("execution.finished")
        screenshot(page, "execution-graph-log-dark")
    assert page_errors == []


def finished_run_page(stack, login, prefix: str, command: str):
    """Run a one-job workflow of `command` to its end, then open its detail page logged in:
    returns the page and the page's response."""
    slug = unique(prefix)
    definition = {
        "slug": slug,
        "nodes": [{"id": "job", "action": "shell", "with": {"command": command}}],
    }
    with stack.client() as client:
        create(client, definition)
        execution = execute(client, slug)
        wait_for_status(client, execution["id"])
    page = login()
    return page, page.goto(f"{stack.url}/executions/{execution['id']}/")


def test_output_is_text_with_ansi_colours_and_no_script_runs(stack, login, page_errors):
    page, response = finished_run_page(stack, login, "ui-escape", ANSI_AND_HTML)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    terminal = page.locator("#terminal")
    expect(terminal).to_contain_text('<script>window.__pwned=1</script><img src=x onerror="')
    expect(terminal).to_contain_text("<b>b</b>")
    expect(terminal.locator("span.ansi-fg-32.ansi-bold")).to_have_text("green bold")
    expect(terminal.locator("span.ansi-fg-31")).to_have_text("red")
    expect(terminal.locator(".line.stderr")).to_have_text("to-stderr")
    # The OSC title sequence is dropped, not shown; the text after it is kept. (Only stdout
    # lines: stdout and stderr are separate pipes, read by separate threads, so a stderr
    # line written microseconds later may be read first.)
    expect(terminal.locator(".line:not(.stderr)").first).to_have_text("green bold plain red after")
    assert terminal.locator("script, img, b").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page_errors == []


def test_a_very_long_output_line_shows_its_start_its_end_and_how_much_is_cut(
    stack, login, page_errors
):
    """A 50,000-character line (minified JSON, a progress bar without newlines) shows its first
    10,000 characters, a note of what is not shown and its last 1,000 characters; the note is
    not part of the line's text, and the lines after it are whole."""
    command = (
        "printf head; head -c 49993 /dev/zero | tr '\\0' x; printf end; echo; echo after-the-line"
    )
    page, _ = finished_run_page(stack, login, "ui-long-line", command)
    terminal = page.locator("#terminal")
    expect(terminal.locator(".line").nth(1)).to_have_text("after-the-line")
    first = terminal.locator(".line").first
    shown = first.evaluate("line => line.textContent")
    assert shown == "head" + "x" * 9996 + "x" * 997 + "end"
    expect(first.locator(".cut-note")).to_have_attribute(
        "data-cut", "… 39000 characters not shown (Download has everything) …"
    )
    assert page_errors == []


def test_approve_from_the_detail_page(stack, login, page_errors):
    slug = unique("ui-gate")
    definition = {
        "slug": slug,
        "nodes": [
            {
                "id": "gate",
                "type": "approval",
                "message": "Ship the release?",
                "on": {"approved": "ship", "rejected": "stop"},
            },
            {"id": "ship", "action": "shell", "with": {"command": "echo shipped"}},
            {"id": "stop", "action": "shell", "with": {"command": "echo stopped"}},
        ],
    }
    # The run is started by `admin`; a second person approves it (no self-approval).
    stack.manage("createsuperuser", "--noinput", "--username", "approver", "--email", "ap@x.test")
    with stack.client() as client:
        create(client, definition)
        execution = execute(client, slug)
        wait_for_status(client, execution["id"], {"paused"})
        page = login("approver")
        open_live(page, f"{stack.url}/executions/{execution['id']}/")
        card = page.locator(".approval-card")
        expect(card).to_contain_text("Ship the release?")
        expect(page.locator("#status-word")).to_have_text("paused")
        screenshot(page, "execution-approval")
        card.get_by_role("textbox").fill("looks good")
        card.get_by_role("button", name="Approve").click()
        expect(page.locator("#status-word")).to_have_text("completed")
        expect(card).to_have_count(0)
        expect(page.locator('#timeline-body tr[data-node="ship"]')).to_have_attribute(
            "data-status", "completed"
        )
        done = wait_for_status(client, execution["id"])
        assert done["status"] == "completed"
        [approval] = done["approvals"]
        assert approval["status"] == "approved"
        assert approval["decided_by"] == "approver"
        assert approval["note"] == "looks good"
    assert page_errors == []


def test_filters_change_the_url_and_the_rows(stack, login, page_errors):
    first, second = unique("ui-filter-a"), unique("ui-filter-b")
    ok = {"id": "ok", "action": "shell", "with": {"command": "true"}}
    with stack.client() as client:
        create(client, {"slug": first, "nodes": [ok]})
        create(client, {"slug": second, "nodes": [{**ok, "with": {"command": "exit 3"}}]})
        run_a = execute(client, first)
        run_b = execute(client, second)
        wait_for_status(client, run_a["id"])
        wait_for_status(client, run_b["id"])
        page = login()
        open_live(page, f"{stack.url}/executions/")
        expect(row(page, run_a["id"])).to_be_visible()
        expect(row(page, run_b["id"])).to_be_visible()

        page.get_by_label("Workflow").select_option(first)
        expect(page).to_have_url(re.compile(rf"[?&]workflow={first}(&|$)"))
        expect(row(page, run_b["id"])).to_have_count(0)
        expect(row(page, run_a["id"])).to_be_visible()
        expect(page.locator("#executions-body tr")).to_have_count(1)

        page.locator("label.status-toggle", has_text="Failed").click()
        expect(page).to_have_url(re.compile(r"[?&]status=failed(&|$)"))
        expect(page.locator("#executions-body tr")).to_have_count(0)
        expect(page.locator("#list-empty")).to_be_visible()

        page.get_by_label("Workflow").select_option("")
        expect(page).not_to_have_url(re.compile(r"workflow="))
        expect(row(page, run_b["id"])).to_be_visible()
        expect(row(page, run_a["id"])).to_have_count(0)

        page.get_by_label("Search").fill(second)
        expect(page).to_have_url(re.compile(rf"[?&]q={second}(&|$)"))
        expect(page.locator("#executions-body tr")).to_have_count(1)

        # The URL is the state: loading it again shows the same filtered rows.
        page.reload()
        expect(page.get_by_label("Search")).to_have_value(second)
        expect(page.locator('input[name=status][value="failed"]')).to_be_checked()
        expect(page.locator("#executions-body tr")).to_have_count(1)
        expect(row(page, run_b["id"])).to_be_visible()
        export = page.locator("#export-csv").get_attribute("href")
        assert "status=failed" in export and f"q={second}" in export
        csv = httpx.get(
            f"{stack.url}{export}", headers={"Authorization": f"Token {stack.token}"}
        ).text
        assert run_b["id"] in csv and run_a["id"] not in csv

        # Browser history restores the previous filters.
        page.go_back()
        expect(page.get_by_label("Search")).to_have_value("")
        expect(page).not_to_have_url(re.compile(r"q="))
    assert page_errors == []


def test_a_dropped_socket_is_shown_retried_and_caught_up(stack, login, tmp_path, page_errors):
    flag = tmp_path / "reconnect.flag"
    slug = unique("ui-reconnect")
    with stack.client() as client:
        create(client, waiting_job(slug, flag))
        execution = execute(client, slug)
        page = login()
        open_live(page, f"{stack.url}/executions/{execution['id']}/")
        expect(page.locator("#terminal")).to_contain_text("started")
        # Drop the socket and hold the retry, as a network outage would.
        page.evaluate(
            """() => {
                window.__heldRetry = SY.live.scheduleRetry;
                SY.live.scheduleRetry = function () {
                    this.setState("retrying", Date.now() + 60000);
                };
                SY.live.ws.close();
            }"""
        )
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "retrying")
        expect(page.locator("#offline-banner")).to_contain_text("disconnected")
        # While disconnected, the run finishes; nothing reaches the page.
        flag.touch()
        wait_for_status(client, execution["id"])
        expect(page.locator("#status-word")).to_have_text("running")
        # The network comes back: the page reconnects, then fetches what it missed by `seq`.
        page.evaluate("() => { SY.live.scheduleRetry = window.__heldRetry; SY.live.retryNow(); }")
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "open")
        expect(page.locator("#offline-banner")).to_be_hidden()
        expect(page.locator("#status-word")).to_have_text("completed")
        expect(page.locator("#terminal")).to_contain_text("flag-seen")
        page.get_by_role("tab", name="Log").click()
        expect(page.locator("#log-list")).to_contain_text("execution.finished")

        # Backoff: a socket that keeps failing waits longer each time (1 s, 2 s, 4 s, ...).
        delays = page.evaluate(
            """() => {
                const live = SY.live, seen = [];
                const realTimeout = window.setTimeout;
                window.setTimeout = (fn, ms) => { seen.push(ms); return 0; };
                live.attempt = 0;
                for (let i = 0; i < 4; i++) live.scheduleRetry();
                window.setTimeout = realTimeout;
                live.attempt = 0;
                live.retryNow();
                return seen;
            }"""
        )
        assert len(delays) == 4
        assert all(later > earlier for earlier, later in itertools.pairwise(delays))
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "open")
    assert page_errors == []


def test_pages_render_for_a_signed_in_user_and_redirect_others(stack, login, page_errors):
    anonymous = httpx.get(f"{stack.url}/executions/", follow_redirects=False)
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith("/login/")
    assert httpx.get(f"{stack.url}/", follow_redirects=False).headers["location"] == "/executions/"
    page = login()
    for path, heading in [
        ("/workflows/", "Workflows"),
        ("/agents/", "Agents"),
        ("/approvals/", "Approvals"),
        ("/analytics/", "Analytics"),
        ("/settings/", "Settings"),
    ]:
        open_live(page, f"{stack.url}{path}")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator(f'.mainnav a[href="{path}"]')).to_have_attribute("aria-current", "page")
    page.goto(f"{stack.url}/agents/")
    expect(page.locator('#agents-body tr[data-agent="e2e-agent"]')).to_contain_text("online")
    screenshot(page, "agents")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{stack.url}/executions/")
    expect(page.locator("#executions-body")).to_be_attached()
    screenshot(page, "executions-list-phone")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/login/$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page_errors == []
