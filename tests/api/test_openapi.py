"""The OpenAPI schema: generated without errors or warnings, valid, complete enough for client
generators, consistent with what the views return — and the docs are served without a CDN."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

HELLO = """
slug: hello-schema
nodes:
  - id: greet
    action: shell
    with: {command: "echo hi"}
"""


@pytest.fixture(scope="module")
def schema() -> dict:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    warnings, errors = dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)
    assert not errors, errors
    assert not warnings, warnings
    validate_schema(generated)
    return generated


def operation(schema: dict, path: str, method: str) -> dict:
    return schema["paths"][path][method]


def query_params(schema: dict, path: str, method: str = "get") -> set[str]:
    return {
        param["name"]
        for param in operation(schema, path, method).get("parameters", [])
        if param["in"] == "query"
    }


def component(schema: dict, ref_holder: dict) -> dict:
    return schema["components"]["schemas"][ref_holder["$ref"].rsplit("/", 1)[1]]


def response_schema(schema: dict, path: str, method: str, code: str) -> dict:
    content = operation(schema, path, method)["responses"][code]["content"]
    return component(schema, content["application/json"]["schema"])


def test_management_command_fails_on_no_warning_and_validates(tmp_path):
    GENERATOR_STATS.reset()
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    assert target.read_text().startswith("openapi: 3.")


def test_schema_is_valid_and_clean(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Switchyard API"


def test_every_operation_has_a_unique_explicit_operation_id(schema):
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    # the former collisions got distinct names (and no numeral suffixes)
    assert operation(schema, "/api/v1/workflows/", "get")["operationId"] == "workflows_list"
    assert operation(schema, "/api/v1/workflows/{slug}/", "get")["operationId"] == (
        "workflows_retrieve"
    )
    assert operation(schema, "/api/v1/secrets/", "get")["operationId"] == "secrets_list"
    assert operation(schema, "/api/v1/secrets/{name}/", "get")["operationId"] == "secrets_retrieve"
    assert operation(schema, "/api/v1/executions/{execution_id}/kill/", "post")["operationId"] == (
        "executions_kill"
    )
    assert operation(schema, "/api/v1/approvals/{approval_id}/reject/", "post")["operationId"] == (
        "approvals_reject"
    )


def test_all_api_views_are_documented(schema):
    paths = set(schema["paths"])
    for path in [
        "/api/v1/workflows/",
        "/api/v1/workflows/validate/",
        "/api/v1/workflows/{slug}/execute/",
        "/api/v1/executions/{execution_id}/jobs/{job_id}/output/",
        "/api/v1/approvals/{approval_id}/approve/",
        "/api/v1/secrets/{name}/",
        "/api/v1/agents/enrollment-tokens/{token_id}/revoke/",
        "/api/v1/pools/",
        "/api/agent/v1/register",
        "/api/agent/v1/jobs/{job_id}/complete",
    ]:
        assert path in paths, path
    for item in schema["paths"].values():
        for method, op in item.items():
            codes = set(op["responses"])
            assert codes & {"200", "201", "204"}, (method, op["operationId"])


def test_query_parameters_are_documented(schema):
    assert {
        "workflow",
        "status",
        "trigger",
        "since",
        "until",
        "label",
        "q",
        "cursor",
        "page_size",
    } <= query_params(schema, "/api/v1/executions/")
    assert {"level", "cursor", "page_size"} <= query_params(
        schema, "/api/v1/executions/{execution_id}/log/"
    )
    assert "after" in query_params(
        schema, "/api/v1/executions/{execution_id}/jobs/{job_id}/output/"
    )
    assert "status" in query_params(schema, "/api/v1/approvals/")
    assert "scope" in query_params(schema, "/api/v1/secrets/")
    for method in ("get", "patch", "delete"):
        assert "scope" in query_params(schema, "/api/v1/secrets/{name}/", method)


def test_security_schemes(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["tokenAuth"]["description"],
    }
    assert schemes["agentTokenAuth"]["type"] == "http"
    assert schemes["agentTokenAuth"]["scheme"] == "bearer"
    heartbeat = operation(schema, "/api/agent/v1/heartbeat", "post")
    assert heartbeat["security"] == [{"agentTokenAuth": []}]
    assert {"tokenAuth": []} in operation(schema, "/api/v1/workflows/", "get")["security"]


def test_error_responses_share_one_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"detail", "errors"}
    item = component(schema, error["properties"]["errors"]["items"])
    assert set(item["properties"]) == {"path", "message"}
    expected = {
        ("/api/v1/workflows/", "post"): {"400", "401"},
        ("/api/v1/workflows/{slug}/", "delete"): {"401", "404", "409"},
        ("/api/v1/workflows/{slug}/execute/", "post"): {"400", "401", "404", "409"},
        ("/api/v1/secrets/", "post"): {"400", "401", "403", "409"},
        ("/api/v1/approvals/{approval_id}/approve/", "post"): {"400", "401", "403", "404", "409"},
        ("/api/agent/v1/register", "post"): {"400", "403", "409"},
    }
    for (path, method), codes in expected.items():
        responses = operation(schema, path, method)["responses"]
        assert codes <= set(responses), (path, method)
        for code in codes:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error"


@pytest.mark.django_db
def test_schema_endpoint(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert b"operationId: executions_list" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_are_served_from_local_static_files(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn.jsdelivr.net" not in html
    assert "unpkg.com" not in html


@pytest.mark.django_db
def test_documented_shapes_match_real_responses(api, schema):
    """The hand-written response serializers mirror what the views actually return."""
    created = api.post("/api/v1/workflows/", {"definition": HELLO}, format="json")
    assert created.status_code == 201
    documented = response_schema(schema, "/api/v1/workflows/", "post", "201")
    assert set(created.json()) == set(documented["properties"])

    listed = api.get("/api/v1/workflows/").json()
    documented = response_schema(schema, "/api/v1/workflows/", "get", "200")
    assert set(listed) == set(documented["properties"])

    valid = api.post("/api/v1/workflows/validate/", {"definition": HELLO}, format="json").json()
    documented = response_schema(schema, "/api/v1/workflows/validate/", "post", "200")
    assert set(valid) == set(documented["properties"])
    node = component(schema, documented["properties"]["nodes"]["items"])
    assert set(valid["nodes"][0]) == set(node["properties"])

    run = api.post("/api/v1/workflows/hello-schema/execute/", {}, format="json")
    assert run.status_code == 201
    documented = response_schema(schema, "/api/v1/workflows/{slug}/execute/", "post", "201")
    assert set(run.json()) == set(documented["properties"])
    node = component(schema, documented["properties"]["nodes"]["items"])
    assert set(run.json()["nodes"][0]) == set(node["properties"])

    missing = api.get("/api/v1/workflows/nope/")
    assert missing.status_code == 404
    assert set(missing.json()) == set(schema["components"]["schemas"]["Error"]["properties"])
