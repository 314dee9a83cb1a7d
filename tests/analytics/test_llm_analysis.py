"""The optional LLM analysis against a real HTTP server (started here) that speaks the
OpenAI-compatible `/v1/chat/completions` API and records what it was sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from executions.models import FailureAnalysis
from orchestrator.secret_store import save_secret
from tests.analytics.test_analytics import DAY1, job, run, workflow

pytestmark = pytest.mark.django_db

ANSWER = "The deploy target refused the connection: start the service, then re-run."


class FakeLLM(BaseHTTPRequestHandler):
    requests: list[dict] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLLM.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        payload = {"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}
        data = json.dumps(payload if FakeLLM.status == 200 else {"error": "boom"}).encode()
        self.send_response(FakeLLM.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def llm(settings):
    FakeLLM.requests, FakeLLM.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SWITCHYARD_LLM_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.SWITCHYARD_LLM_API_KEY = "sk-test-key"
    settings.SWITCHYARD_LLM_MODEL = "tiny-model"
    yield FakeLLM
    server.shutdown()
    server.server_close()


@pytest.fixture
def failed():
    wf = workflow("llm-wf")
    save_secret("DEPLOY_TOKEN", "hunter2-very-secret")
    execution = run(wf, "failed", DAY1, 5, nodes={"build": {"status": "failed"}})
    job(
        execution,
        "build",
        1,
        "failed",
        exit_code=7,
        error="exit status 7",
        error_kind="exit_code",
        # A secret that leaked into output unmasked must still not reach the LLM.
        stderr="curl: (7) Failed to connect to 127.0.0.1 port 9: Connection refused\n"
        "token=hunter2-very-secret\n",
    )
    return execution


def url(execution) -> str:
    return f"/api/v1/executions/{execution.pk}/diagnose/"


def test_llm_answer_is_stored_and_returned_with_the_evidence_masked(api, llm, failed):
    response = api.post(url(failed), {"llm": True}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["cause"]["kind"] == "connection_refused"
    assert body["llm_enabled"] is True
    assert body["llm_analysis"]["answer"] == ANSWER
    assert body["llm_analysis"]["model"] == "tiny-model"

    (sent,) = llm.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-test-key"
    assert sent["body"]["model"] == "tiny-model"
    prompt = sent["body"]["messages"][-1]["content"]
    assert "Connection refused" in prompt and '"kind": "connection_refused"' in prompt
    assert "hunter2-very-secret" not in prompt and "token=***" in prompt

    stored = FailureAnalysis.objects.get(execution=failed)
    assert stored.answer == ANSWER and stored.prompt == prompt and stored.error == ""

    # Without `llm`, the stored answer comes back and the LLM is not asked again.
    again = api.post(url(failed), {}, format="json").json()
    assert again["llm_analysis"]["id"] == stored.pk
    assert len(llm.requests) == 1


def test_llm_errors_are_stored_not_raised(api, llm, failed):
    llm.status = 500
    body = api.post(url(failed), {"llm": True}, format="json").json()
    assert body["llm_analysis"]["answer"] == ""
    assert body["llm_analysis"]["error"] == "the LLM endpoint answered HTTP 500"
    assert body["cause"]["kind"] == "connection_refused"


def test_llm_off_by_default(api, failed, settings):
    settings.SWITCHYARD_LLM_BASE_URL = ""
    body = api.post(url(failed), {}, format="json").json()
    assert body["llm_enabled"] is False and body["llm_analysis"] is None
    response = api.post(url(failed), {"llm": True}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "llm"
    bad = api.post(url(failed), {"llm": "maybe"}, format="json")
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "llm"


def test_diagnosis_page_asks_the_llm_and_shows_the_answer(admin_user, llm, failed):
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(f"/executions/{failed.pk}/diagnosis/").content.decode()
    assert "connection_refused" in page and "Not asked yet." in page
    asked = browser.post(f"/executions/{failed.pk}/diagnosis/").content.decode()
    assert ANSWER in asked and len(llm.requests) == 1
