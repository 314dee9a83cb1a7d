"""Workflow API: create, versions, publish, validate, execute — and clear 4xx errors."""

from __future__ import annotations

import pytest

from executions.models import Execution, Job
from orchestrator.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

HELLO = """
slug: hello-api
inputs:
  who: {type: string, required: true}
  times: {type: integer, default: 1}
nodes:
  - id: greet
    action: shell
    with: {command: "echo hi {{ inputs.who | shell_quote }}"}
"""


def errors_of(response) -> dict[str, str]:
    return {error["path"]: error["message"] for error in response.json()["errors"]}


def test_create_workflow_publishes_version_one(api):
    response = api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "hello-api"
    assert body["published_version"] == 1 and body["latest_version"] == 1
    assert body["inputs"]["who"]["required"] is True
    assert WorkflowVersion.objects.get(workflow__slug="hello-api").source == HELLO


def test_create_accepts_a_json_object(api):
    definition = {
        "slug": "as-json",
        "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
    }
    assert (
        api.post("/api/v1/workflows/", {"definition": definition}, format="json").status_code == 201
    )


@pytest.mark.parametrize(
    ("definition", "path", "fragment"),
    [
        (
            {
                "slug": "bad",
                "nodes": [
                    {
                        "id": "a",
                        "action": "shell",
                        "with": {"command": "x"},
                        "on": {"success": "ghost"},
                    }
                ],
            },
            "definition.nodes[0].on.success",
            "ghost",
        ),
        (
            {
                "slug": "bad",
                "nodes": [
                    {
                        "id": "a",
                        "action": "shell",
                        "with": {"command": "x"},
                        "on": {"success": "b"},
                    },
                    {
                        "id": "b",
                        "action": "shell",
                        "with": {"command": "x"},
                        "on": {"success": "a"},
                    },
                ],
            },
            "definition.nodes",
            "cycle",
        ),
        (
            {
                "slug": "bad",
                "inputs": {"n": {"type": "integr"}},
                "nodes": [{"id": "a", "action": "shell", "with": {"command": "x"}}],
            },
            "definition.inputs.n.type",
            "integr",
        ),
        (
            {
                "slug": "bad",
                "nodes": [{"id": "a", "action": "shell", "with": {"command": "echo {{ inputs.x "}}],
            },
            "definition.nodes[0].with.command",
            "",
        ),
        (
            {"slug": "bad", "nodes": [{"id": "a", "action": "teleport", "with": {}}]},
            "definition.nodes[0].action",
            "teleport",
        ),
    ],
)
def test_invalid_definitions_are_rejected_with_paths_and_not_stored(
    api, definition, path, fragment
):
    response = api.post("/api/v1/workflows/", {"definition": definition}, format="json")
    assert response.status_code == 400, response.content
    errors = errors_of(response)
    matching = [p for p in errors if p == path or p.startswith(path)]
    assert matching, errors
    assert fragment in " ".join(errors[p] for p in matching)
    assert not Workflow.objects.exists() and not WorkflowVersion.objects.exists()


def test_yaml_syntax_errors_are_400(api):
    response = api.post("/api/v1/workflows/", {"definition": "slug: [unclosed"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]


@pytest.mark.parametrize("body", [{}, {"definition": 42}, {"definition": ""}, [1, 2]])
def test_malformed_requests_are_400(api, body):
    response = api.post("/api/v1/workflows/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] in ("definition", "")


def test_non_json_body_is_400(api):
    response = api.post("/api/v1/workflows/", "{not json", content_type="application/json")
    assert response.status_code == 400


def test_duplicate_slug_is_400_on_slug(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    response = api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    assert response.status_code == 400
    assert "definition.slug" in errors_of(response)


def test_versions_and_publish(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    v2 = api.post(
        "/api/v1/workflows/hello-api/versions/",
        {"definition": HELLO.replace("hi", "hello")},
        format="json",
    )
    assert v2.status_code == 201 and v2.json()["number"] == 2
    detail = api.get("/api/v1/workflows/hello-api/").json()
    assert detail["published_version"] == 1 and detail["latest_version"] == 2
    assert [v["number"] for v in detail["versions"]] == [2, 1]
    published = api.post("/api/v1/workflows/hello-api/publish/", {}, format="json")
    assert published.json()["published_version"] == 2
    back = api.post("/api/v1/workflows/hello-api/publish/", {"version": 1}, format="json")
    assert back.json()["published_version"] == 1
    assert (
        api.post("/api/v1/workflows/hello-api/publish/", {"version": 9}, format="json").status_code
        == 404
    )


def test_new_version_must_keep_the_slug(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    response = api.post(
        "/api/v1/workflows/hello-api/versions/",
        {"definition": HELLO.replace("hello-api", "other")},
        format="json",
    )
    assert response.status_code == 400
    assert "definition.slug" in errors_of(response)


def test_versions_are_immutable(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    version = WorkflowVersion.objects.get()
    version.source = "changed"
    with pytest.raises(ValueError, match="immutable"):
        version.save()


def test_validate_reports_without_storing(api):
    ok = api.post("/api/v1/workflows/validate/", {"definition": HELLO}, format="json").json()
    assert ok["valid"] is True and ok["nodes"][0]["id"] == "greet"
    bad = api.post(
        "/api/v1/workflows/validate/", {"definition": {"slug": "x", "nodes": []}}, format="json"
    ).json()
    assert bad["valid"] is False and bad["errors"][0]["path"].startswith("definition")
    assert not Workflow.objects.exists()


def test_execute_validates_inputs_with_paths(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    missing = api.post("/api/v1/workflows/hello-api/execute/", {"inputs": {}}, format="json")
    assert missing.status_code == 400
    assert "inputs.who" in errors_of(missing)
    wrong = api.post(
        "/api/v1/workflows/hello-api/execute/",
        {"inputs": {"who": "x", "times": "many"}},
        format="json",
    )
    assert wrong.status_code == 400 and "inputs.times" in errors_of(wrong)
    bad_labels = api.post(
        "/api/v1/workflows/hello-api/execute/",
        {"inputs": {"who": "x"}, "labels": {"bad key!": "v"}},
        format="json",
    )
    assert bad_labels.status_code == 400
    assert not Execution.objects.exists()


def test_execute_creates_an_execution_and_a_pending_job(api, django_capture_on_commit_callbacks):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(
            "/api/v1/workflows/hello-api/execute/", {"inputs": {"who": "O'Brien"}}, format="json"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "running"
    assert body["trigger"] == {"kind": "manual", "user": "root", "channel": "api"}
    [job] = body["jobs"]
    assert job["status"] == "pending" and job["queue"] == "pool.default"
    assert job["params"]["command"] == "echo hi 'O'\"'\"'Brien'"
    assert len(callbacks) == 2  # publish the job; push the new log events live
    assert Job.objects.count() == 1


WHO = {"inputs": {"who": "ops"}}


def test_a_repeated_idempotency_key_returns_the_first_run_and_starts_nothing(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    url = "/api/v1/workflows/hello-api/execute/"
    first = api.post(url, WHO, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    again = api.post(url, WHO, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    other = api.post(url, WHO, format="json", HTTP_IDEMPOTENCY_KEY="order-43")
    plain = api.post(url, WHO, format="json")
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert plain.status_code == 201
    assert Execution.objects.count() == 3 and Job.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_with_one_idempotency_key_make_one_run_and_no_error(api, admin_user):
    """Eight clients start with the same key at once, five times over, on real PostgreSQL
    connections: the requests that pass the lookup together race on the unique constraint, and
    every loser answers with the winner's run instead of a 500."""
    import threading

    from rest_framework.test import APIClient

    from orchestrator.authentication import create_api_token

    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    url = "/api/v1/workflows/hello-api/execute/"
    token = create_api_token(admin_user)

    def start(key: str, barrier: threading.Barrier, answers: list[tuple[int, str]]) -> None:
        from django.db import connection

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        barrier.wait()
        response = client.post(url, WHO, format="json", HTTP_IDEMPOTENCY_KEY=key)
        answers.append((response.status_code, response.json().get("id", "")))
        connection.close()

    for round_number in range(5):
        key = f"race-{round_number}"
        barrier = threading.Barrier(8)
        answers: list[tuple[int, str]] = []
        threads = [threading.Thread(target=start, args=(key, barrier, answers)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        codes = sorted(code for code, _ in answers)
        assert codes == [200] * 7 + [201], codes
        assert len({run for _, run in answers}) == 1
        assert Execution.objects.filter(idempotency_key=key).count() == 1


@pytest.mark.parametrize("key", ["x" * 201, "bad\nkey"])
def test_unusable_idempotency_keys_are_refused_with_the_header_as_path(api, key):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    response = api.post(
        "/api/v1/workflows/hello-api/execute/", WHO, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "Idempotency-Key"
    assert Execution.objects.count() == 0


def test_inactive_workflow_cannot_run(api):
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    assert (
        api.patch("/api/v1/workflows/hello-api/", {"is_active": False}, format="json").status_code
        == 200
    )
    response = api.post(
        "/api/v1/workflows/hello-api/execute/", {"inputs": {"who": "x"}}, format="json"
    )
    assert response.status_code == 409


def test_unknown_workflow_is_404(api):
    assert api.get("/api/v1/workflows/nope/").status_code == 404
    assert api.post("/api/v1/workflows/nope/execute/", {}, format="json").status_code == 404


def test_authentication_is_required(client):
    assert client.get("/api/v1/workflows/").status_code == 401
    response = client.get("/api/v1/workflows/", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 401


def test_reading_the_output_of_a_node_that_is_not_upstream_is_rejected(api):
    definition = {
        "slug": "bad-ref",
        "nodes": [
            {
                "id": "build",
                "action": "shell",
                "with": {"command": "true"},
                "on": {"success": "done"},
            },
            {"id": "done", "type": "join"},
            {
                "id": "ship",
                "action": "shell",
                "with": {"command": "echo {{ nodes.build.output.stdout }}"},
            },
        ],
    }
    response = api.post("/api/v1/workflows/", {"definition": definition}, format="json")
    assert response.status_code == 400
    assert "'build' is not upstream of 'ship'" in errors_of(response)["definition.nodes[2]"]
    definition["nodes"][1]["on"] = {"success": "ship"}
    assert (
        api.post("/api/v1/workflows/", {"definition": definition}, format="json").status_code == 201
    )


def test_every_example_workflow_is_valid(api, settings):
    from pathlib import Path

    paths = sorted((Path(settings.BASE_DIR) / "examples").glob("*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        response = api.post(
            "/api/v1/workflows/validate/", {"definition": path.read_text()}, format="json"
        )
        assert response.json()["valid"], (path.name, response.json()["errors"])


def test_a_start_may_prefer_a_minimal_answer(api, django_assert_max_num_queries):
    """`Prefer: return=minimal` answers with the run's id, workflow, status and creation time
    only, without reading the detail back; a repeat with the same key gets the same run."""
    api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    url = "/api/v1/workflows/hello-api/execute/"
    with django_assert_max_num_queries(10):
        response = api.post(
            url, WHO, format="json", HTTP_PREFER="return=minimal", HTTP_IDEMPOTENCY_KEY="k1"
        )
    assert response.status_code == 201
    assert response["Preference-Applied"] == "return=minimal"
    body = response.json()
    assert set(body) == {"id", "workflow", "status", "created_at"}
    assert body["workflow"] == "hello-api" and body["status"] == "running"
    assert Execution.objects.get(pk=body["id"]).status == "running"

    repeat = api.post(
        url,
        WHO,
        format="json",
        HTTP_PREFER="respond-async, return=minimal",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert repeat.status_code == 200 and repeat.json()["id"] == body["id"]
    assert set(repeat.json()) == set(body)

    full = api.post(url, WHO, format="json")
    assert "Preference-Applied" not in full and "jobs" in full.json()
