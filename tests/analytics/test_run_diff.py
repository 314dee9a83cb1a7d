"""Run diff: GET /api/v1/executions/{id}/diff/?against=… and its side-by-side page."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orchestrator.services import add_version
from tests.analytics.test_analytics import DAY1, agent, job, run, workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair():
    wf = workflow("diffy")
    a1, a2 = agent("diff-a1"), agent("diff-a2")
    v2 = add_version(wf, wf.published_version.definition | {"description": "second"})
    good = run(wf, "completed", DAY1, 10, inputs={"env": "prod", "build": 1})
    bad = run(
        wf,
        "failed",
        DAY1 + timedelta(hours=1),
        25,
        version=v2,
        inputs={"env": "prod", "build": 2, "flag": True},
        nodes={"build": {"status": "completed"}, "deploy": {"status": "failed"}},
    )
    good.nodes = {"build": {"status": "completed"}, "deploy": {"status": "completed"}}
    good.save(update_fields=["nodes"])
    job(good, "build", 1, "completed", a1, exit_code=0, duration_ms=1000, stdout="compiled\n")
    job(good, "deploy", 1, "completed", a1, exit_code=0, duration_ms=500, stdout="deployed\n")
    job(bad, "build", 1, "completed", a1, exit_code=0, duration_ms=1200, stdout="compiled\n")
    job(bad, "deploy", 1, "failed", a2, exit_code=3, duration_ms=90, stderr="no route\n")
    return good, bad


def test_diff_against_an_id_lists_every_difference(api, pair):
    good, bad = pair
    response = api.get(f"/api/v1/executions/{bad.pk}/diff/", {"against": str(good.pk)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["left"]["id"], body["right"]["id"]) == (str(good.pk), str(bad.pk))
    assert body["version"]["changed"] is True
    assert (body["version"]["left"], body["version"]["right"]) == (1, 2)
    assert '+  "description": "second"' in body["version"]["definition_diff"]
    assert body["inputs"]["added"] == ["flag"]
    assert body["inputs"]["changed"] == ["build"]
    assert body["inputs"]["removed"] == []
    assert body["duration_ms"] == {"left": 10000, "right": 25000}
    nodes = {node["node"]: node for node in body["nodes"]}
    assert nodes["build"]["changed"] == []
    deploy = nodes["deploy"]
    assert deploy["left"]["status"] == "completed" and deploy["right"]["status"] == "failed"
    assert (deploy["left"]["exit_code"], deploy["right"]["exit_code"]) == (0, 3)
    assert (deploy["left"]["agent"], deploy["right"]["agent"]) == ("diff-a1", "diff-a2")
    assert deploy["changed"] == ["agent", "exit_code", "status", "stdout", "stderr"]
    assert "-deployed" in deploy["output_diff"]["stdout"]
    assert "+no route" in deploy["output_diff"]["stderr"]


def test_last_success_picks_the_latest_completed_run_before(api, pair):
    good, bad = pair
    body = api.get(f"/api/v1/executions/{bad.pk}/diff/", {"against": "last_success"}).json()
    assert body["left"]["id"] == str(good.pk)


def test_diff_query_count_is_fixed(api, pair):
    good, bad = pair
    with CaptureQueriesContext(connection) as queries:
        api.get(f"/api/v1/executions/{bad.pk}/diff/", {"against": str(good.pk)})
    # token auth (2) + this execution + the other + both runs' jobs.
    assert len(queries) <= 6, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize(
    ("against", "message"),
    [
        (None, "required"),
        ("nope", "must be an execution id"),
        (str(uuid.uuid4()), "no such execution"),
        ("self", "another execution"),
    ],
)
def test_bad_against_is_a_400_naming_the_parameter(api, pair, against, message):
    _, bad = pair
    params = {} if against is None else {"against": str(bad.pk) if against == "self" else against}
    response = api.get(f"/api/v1/executions/{bad.pk}/diff/", params)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["path"] == "against" and message in error["message"]


def test_no_earlier_success_is_a_400(api, pair):
    good, _ = pair
    response = api.get(f"/api/v1/executions/{good.pk}/diff/", {"against": "last_success"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "against"


def test_unknown_execution_is_a_404(api, db):
    assert (
        api.get(f"/api/v1/executions/{uuid.uuid4()}/diff/?against=last_success").status_code == 404
    )


def test_diff_page_shows_both_runs_side_by_side(admin_user, pair):
    good, bad = pair
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(f"/executions/{bad.pk}/diff/?against=last_success")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"/executions/{good.pk}/" in html and f"/executions/{bad.pk}/" in html
    assert 'data-node="deploy" data-changed="agent,exit_code,status,stdout,stderr"' in html
    assert "+no route" in html
    missing = browser.get(f"/executions/{good.pk}/diff/?against=last_success")
    assert missing.status_code == 400 and "no successful run" in missing.content.decode()
    detail = browser.get(f"/executions/{bad.pk}/").content.decode()
    assert f"/executions/{bad.pk}/diff/?against=last_success" in detail
