"""Strings PostgreSQL cannot store (NUL, lone UTF-16 surrogates) are a 400 with the field path
on every user API (not a 500 when the row is saved); on the agent protocol, job output keeps
flowing with U+FFFD in their place."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from executions.models import Job, JobOutputChunk

pytestmark = pytest.mark.django_db

SHELL = [{"id": "a", "action": "shell", "with": {"command": "true"}}]
BAD = [b'"a\\u0000b"', b'"a\\ud800b"', b'"\\udfff"']


def post_raw(api, path: str, body: bytes):
    return api.generic("POST", path, data=body, content_type="application/json")


@pytest.mark.parametrize("raw", BAD)
def test_user_api_refuses_unstorable_strings_with_their_path(api, raw):
    created = post_raw(
        api,
        "/api/v1/workflows/",
        b'{"definition": {"slug": "s", "description": ' + raw + b', "nodes": []}}',
    )
    assert created.status_code == 400
    assert created.json()["errors"][0]["path"] == "definition.description"
    api.post(
        "/api/v1/workflows/",
        {"definition": {"slug": "ok", "inputs": {"x": {"type": "string"}}, "nodes": SHELL}},
        format="json",
    )
    for path, body in [
        ("/api/v1/workflows/ok/execute/", b'{"inputs": {"x": ' + raw + b"}}"),
        ("/api/v1/events/", b'{"source": ' + raw + b', "type": "x"}'),
        ("/api/v1/secrets/", b'{"name": "n", "value": ' + raw + b"}"),
        ("/api/v1/workflows/", b'{"definition": {' + raw + b": 1}}"),
    ]:
        response = post_raw(api, path, body)
        assert response.status_code == 400, (path, response.content)
        assert response.json()["errors"], path


def test_agent_output_with_nul_is_stored_with_a_replacement_character():
    from agents.services import register_agent
    from executions.advancing import start_execution
    from orchestrator.services import create_workflow

    start_execution(create_workflow({"slug": "nul", "nodes": SHELL}))
    job = Job.objects.get()
    token = register_agent(enrollment_token=None, name="a1", pools=["default"], labels={})[1]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    claim = api.generic(
        "POST",
        f"/api/agent/v1/jobs/{job.pk}/claim",
        data=b"{}",
        content_type="application/json",
    )
    assert claim.status_code == 200, claim.content
    lease = claim.json().get("lease") or claim.json().get("lease_id")
    chunk = b'{"seq": 1, "stream": "stdout", "data": "x\\u0000y\\ud800z"}'
    body = b'{"lease": "%s", "chunks": [%s]}' % (str(lease).encode(), chunk)
    response = api.generic(
        "POST",
        f"/api/agent/v1/jobs/{job.pk}/output",
        data=body,
        content_type="application/json",
    )
    assert response.status_code < 300, response.content
    assert "".join(JobOutputChunk.objects.values_list("data", flat=True)) == "x\ufffdy\ufffdz"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/secrets/?scope=a%00b",
        "/api/v1/secrets/a%00b/",
        "/api/v1/executions/?q=%00",
        "/api/v1/executions/?workflow=x&%00=1",
        "/api/v1/events/?source=%00",
    ],
)
def test_nul_in_the_url_is_400_in_the_error_shape(api, url):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["message"].startswith("strings may not contain NUL")


def test_nul_in_a_page_url_is_400(admin_user):
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    assert client.get("/executions/?q=%00").status_code == 400
