"""Secrets: encrypted at rest, delivered only in a claim, masked in every sink, write-only."""

from __future__ import annotations

import base64
import shlex
import uuid
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.test import APIClient

from agents.services import register_agent
from executions.advancing import start_execution
from executions.jobs import (
    JobReport,
    OutputChunk,
    append_output,
    claim_job,
    job_spec,
)
from executions.models import ExecutionEvent, Job, JobOutputChunk
from executions.report_batch import report_job_result
from orchestrator.models import Secret, SecretUsage
from orchestrator.roles import set_roles
from orchestrator.secret_store import save_secret
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db
VALUE = "hunter2-S3cr3t/+="

DEPLOY = {
    "slug": "deploy",
    "nodes": [
        {
            "id": "push",
            "action": "shell",
            "with": {
                "command": "deploy --token {{ secrets.api_token | shell_quote }}",
                "env": {"DB_PASSWORD": "{{ secrets.db }}"},
            },
            "on": {"success": "after"},
        },
        {
            "id": "after",
            "action": "shell",
            "with": {"command": "echo {{ nodes.push.output.stdout }}"},
        },
    ],
}


def raw_column(secret: Secret) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ciphertext FROM orchestrator_secret WHERE id = %s", [secret.pk])
        return cursor.fetchone()[0]


def test_values_are_encrypted_at_rest():
    secret = save_secret("api_token", VALUE)
    stored = raw_column(secret)
    assert VALUE not in stored and "hunter2" not in stored
    assert base64.b64encode(VALUE.encode()).decode() not in stored


def test_values_reach_only_the_claim_and_are_masked_everywhere(api):
    save_secret("api_token", VALUE)
    workflow = create_workflow(DEPLOY)
    save_secret("db", "scoped-db-pass", workflow=workflow)
    save_secret("db", "global-db-pass")
    agent, _ = register_agent(enrollment_token=None, name="a", pools=["default"], labels={})
    execution = start_execution(workflow)
    job = Job.objects.get(execution=execution)
    assert job.params["command"] == "deploy --token '***'" and job.secrets == ["api_token", "db"]
    assert VALUE not in str(list(ExecutionEvent.objects.values()))

    claimed = claim_job(agent, job.pk)
    spec = job_spec(claimed)
    assert spec["params"]["command"] == f"deploy --token {shlex.quote(VALUE)}"
    assert spec["params"]["env"] == {"DB_PASSWORD": "scoped-db-pass"}
    assert set(spec["mask"]) == {VALUE, "scoped-db-pass"}
    assert VALUE not in str(Job.objects.filter(pk=job.pk).values().get())
    assert sorted(SecretUsage.objects.values_list("name", flat=True)) == ["api_token", "db"]

    encoded = base64.b64encode(VALUE.encode()).decode()
    append_output(
        agent,
        job.pk,
        claimed.lease,
        [
            OutputChunk(1, "stdout", f"token={VALUE}\n"),
            OutputChunk(2, "stderr", f"b64={encoded} url={quote(VALUE, safe='')}\n"),
        ],
    )
    report_job_result(
        agent,
        job.pk,
        JobReport(
            lease=claimed.lease,
            status="completed",
            stdout=f"deployed with {VALUE}",
            stderr=encoded,
            outputs={"echo": VALUE},
            error="",
        ),
    )
    stored = Job.objects.get(pk=job.pk)
    chunks = "".join(JobOutputChunk.objects.values_list("data", flat=True))
    for sink in (stored.stdout, stored.stderr, str(stored.outputs), chunks):
        assert "hunter2" not in sink and encoded.rstrip("=") not in sink
    assert stored.stdout == "deployed with ***"
    after = Job.objects.get(execution=execution, node_id="after")
    assert "hunter2" not in after.params["command"]
    detail = api.get(f"/api/v1/executions/{execution.pk}/").content.decode()
    assert "hunter2" not in detail


def test_unknown_secret_fails_the_node_naming_it():
    workflow = create_workflow(
        {
            "slug": "nosecret",
            "nodes": [
                {"id": "x", "action": "shell", "with": {"command": "echo {{ secrets.missing }}"}},
            ],
        }
    )
    execution = start_execution(workflow)
    assert execution.status == "failed"
    assert "secrets.missing" in execution.error


def test_secrets_api_is_write_only(api, django_user_model):
    created = api.post("/api/v1/secrets/", {"name": "tok", "value": VALUE}, format="json")
    assert created.status_code == 201 and "value" not in created.json()
    assert created.json()["scope"] == "global"
    listing = api.get("/api/v1/secrets/").content.decode()
    assert "hunter2" not in listing and '"tok"' in listing
    assert (
        api.post("/api/v1/secrets/", {"name": "tok", "value": "x"}, format="json").status_code
        == 409
    )
    patched = api.patch("/api/v1/secrets/tok/", {"value": "new-value-1"}, format="json")
    assert patched.status_code == 200 and "value" not in patched.json()
    bad = api.post(
        "/api/v1/secrets/", {"name": "bad name", "value": "", "scope": "nope"}, format="json"
    )
    assert {e["path"] for e in bad.json()["errors"]} == {"name", "value"}
    assert (
        api.post(
            "/api/v1/secrets/", {"name": "ok", "value": "v", "scope": "nope"}, format="json"
        ).status_code
        == 400
    )
    viewer = django_user_model.objects.create_user("viewer")
    set_roles(viewer, add=["viewer"])
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/v1/secrets/").status_code == 200
    assert (
        client.post("/api/v1/secrets/", {"name": "x", "value": "y"}, format="json").status_code
        == 403
    )
    assert api.delete("/api/v1/secrets/tok/").status_code == 204
    assert not Secret.objects.filter(name="tok").exists()


def test_connections_merge_into_params_at_claim_time_only():
    import json

    save_secret(
        "web01",
        json.dumps(
            {
                "host": "web01.internal",
                "user": "deploy",
                "password": "pw-Very-Secret-9",
                "known_hosts_policy": "insecure",
                "port": 2222,
            }
        ),
    )
    workflow = create_workflow(
        {
            "slug": "sshy",
            "nodes": [
                {
                    "id": "x",
                    "action": "ssh",
                    "with": {"connection": "web01", "command": "uptime", "user": "override"},
                },
            ],
        }
    )
    agent, _ = register_agent(enrollment_token=None, name="s", pools=["default"], labels={})
    job = Job.objects.get(execution=start_execution(workflow))
    assert job.params == {"connection": "web01", "command": "uptime", "user": "override"}
    assert job.secrets == ["web01"]
    spec = job_spec(claim_job(agent, job.pk))
    assert spec["params"] == {
        "host": "web01.internal",
        "user": "override",
        "password": "pw-Very-Secret-9",
        "known_hosts_policy": "insecure",
        "port": 2222,
        "command": "uptime",
    }
    assert "pw-Very-Secret-9" in spec["mask"] and "web01.internal" not in spec["mask"]
    report_job_result(
        agent,
        job.pk,
        JobReport(
            lease=uuid.UUID(spec["lease"]),
            status="completed",
            stdout="login pw-Very-Secret-9 on web01.internal",
        ),
    )
    assert Job.objects.get(pk=job.pk).stdout == "login *** on web01.internal"


def test_missing_connection_fails_the_node():
    workflow = create_workflow(
        {
            "slug": "noconn",
            "nodes": [
                {"id": "x", "action": "ssh", "with": {"connection": "ghost", "command": "uptime"}},
            ],
        }
    )
    execution = start_execution(workflow)
    assert execution.status == "failed" and "no secret named 'ghost'" in execution.error
