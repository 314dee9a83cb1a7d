"""Action types end to end on a real agent: http with JSON extraction and assertions, python
scripts, and an assertion failure that takes the error edge."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.helpers import node_statuses, run

pytestmark = pytest.mark.e2e


class InventoryHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/inventory"):
            body = json.dumps({"data": {"token": "t-123"}, "items": [{"id": 7}, {"id": 9}]})
            status = 200
        else:
            body, status = json.dumps({"error": "unavailable"}), 503
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def inventory():
    server = ThreadingHTTPServer(("127.0.0.1", 0), InventoryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_step_extracts_json_and_passes_it_on(stack, inventory):
    definition = {
        "slug": "e2e-http",
        "nodes": [
            {
                "id": "fetch",
                "action": "http",
                "with": {"url": f"{inventory}/inventory"},
                "outputs": {"token": "$.data.token", "first": "$.items[0].id"},
                "assert": ["{{ output.http.status == 200 }}", "output.json['items'] | length == 2"],
                "on": {"success": "use"},
            },
            {
                "id": "use",
                "action": "shell",
                "with": {
                    "command": "echo token={{ nodes.fetch.output.outputs.token }} "
                    "first={{ nodes.fetch.output.outputs.first }}"
                },
            },
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed", execution["error"]
    fetch = next(job for job in execution["jobs"] if job["node_id"] == "fetch")
    assert fetch["http"]["status"] == 200
    assert fetch["http"]["json"]["data"] == {"token": "t-123"}
    assert fetch["outputs"] == {"token": "t-123", "first": 7}
    assert [a["passed"] for a in fetch["assertions"]] == [True, True]
    use = next(job for job in execution["jobs"] if job["node_id"] == "use")
    assert use["stdout"].strip() == "token=t-123 first=7"


def test_failed_http_assertion_takes_the_error_edge(stack, inventory):
    definition = {
        "slug": "e2e-http-assert",
        "nodes": [
            {
                "id": "probe",
                "action": "http",
                "with": {"url": f"{inventory}/health", "expect_status": [200, 503]},
                "assert": ["{{ output.http.status == 200 }}"],
                "on": {"success": "happy", "error": "page"},
            },
            {"id": "happy", "action": "shell", "with": {"command": "echo fine"}},
            {
                "id": "page",
                "action": "shell",
                "with": {"command": "echo paging: {{ nodes.probe.output.error | shell_quote }}"},
            },
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed"
    assert node_statuses(execution) == {"probe": "failed", "happy": "skipped", "page": "completed"}
    probe = next(job for job in execution["jobs"] if job["node_id"] == "probe")
    assert probe["status"] == "failed" and probe["http"]["status"] == 503
    assert probe["assertions"] == [
        {"expression": "{{ output.http.status == 200 }}", "passed": False, "value": False}
    ]
    assert "assertion failed" in probe["error"]
    assert any(e["kind"] == "assertion" and e["level"] == "error" for e in execution["log"])


def test_loopback_is_refused_without_an_allow_list(stack):
    definition = {
        "slug": "e2e-ssrf",
        "nodes": [{"id": "sneaky", "action": "http", "with": {"url": "http://169.254.169.254/"}}],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "failed"
    [job] = execution["jobs"]
    assert job["error"].startswith("blocked: 169.254.169.254")


def test_python_script_step_writes_outputs(stack):
    definition = {
        "slug": "e2e-script",
        "nodes": [
            {
                "id": "compute",
                "action": "script",
                "with": {
                    "interpreter": "python",
                    "parse": "json",
                    "body": (
                        "import json, os\n"
                        "with open(os.environ['SWITCHYARD_OUTPUT'], 'a') as out:\n"
                        "    out.write('answer=42\\n')\n"
                        "node = os.environ['SWITCHYARD_NODE_ID']\n"
                        "print(json.dumps({'node': node, 'sum': 1 + 2}))\n"
                    ),
                },
                "on": {"success": "report"},
            },
            {
                "id": "report",
                "action": "shell",
                "with": {
                    "command": "echo {{ nodes.compute.output.outputs.answer }} "
                    "{{ nodes.compute.output.outputs.json.sum }}"
                },
            },
        ],
    }
    with stack.client() as client:
        execution = run(client, definition)
    assert execution["status"] == "completed", execution["error"]
    compute = next(job for job in execution["jobs"] if job["node_id"] == "compute")
    assert compute["outputs"] == {"answer": "42", "json": {"node": "compute", "sum": 3}}
    report = next(job for job in execution["jobs"] if job["node_id"] == "report")
    assert report["stdout"].strip() == "42 3"
