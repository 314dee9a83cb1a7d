"""Schemathesis against the API with each role's token (in-process, the real Django app on the
test database): no 5xx, every response conforms to the OpenAPI document (status code, content
type, body schema), and a role that lacks an operation's `x-required-action` gets nothing but
403 from it (so nothing is readable or doable across a permission boundary).

Bounded: `FUZZ_EXAMPLES` generated requests per operation and role (SWITCHYARD_FUZZ_EXAMPLES
raises it for a deeper run).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.authentication import create_api_token
from orchestrator.roles import ROLE_ACTIONS, Action, Role, set_roles
from orchestrator.services import create_workflow
from orchestrator.unstorable import MESSAGE

pytestmark = pytest.mark.django_db(transaction=False)

FUZZ_EXAMPLES = int(os.environ.get("SWITCHYARD_FUZZ_EXAMPLES", "8"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SUBJECTS = ["nobody", *[role.value for role in Role]]


@pytest.fixture
def wsgi_app():
    """The Django WSGI app, keeping the test's connection open between requests like the test
    client does (its transaction is rolled back after the test)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def token_for(name: str, django_user_model) -> str:
    user = django_user_model.objects.create_user(f"fuzz-{name}")
    if name != "nobody":
        set_roles(user, add=[name])
    return create_api_token(user)


def api_operations(schema):
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/api/v1/"):
            yield operation


def routable(case) -> bool:
    """False when no route matches the generated path (e.g. a negative id): the URL resolver
    answers 404 before any view, so there is no boundary to cross."""
    try:
        resolve(case.formatted_path)
    except Resolver404:
        return False
    return True


def refused_before_the_view(case, response) -> bool:
    """A forbidden role's request ends in a 403 from the role check, or earlier: a 404 from the
    URL resolver, or a 400 from the URL guard (a NUL in the path or query). Never a 2xx."""
    if response.status_code == 403:
        return True
    if response.status_code == 404:
        return not routable(case)
    if response.status_code != 400:
        return False
    errors = response.json().get("errors") or [{}]
    return errors[0].get("message") == MESSAGE


def required_action(schema, operation) -> Action:
    raw = schema.raw_schema["paths"][operation.path][operation.method.lower()]
    return Action(raw["x-required-action"])


@pytest.mark.parametrize("name", SUBJECTS)
def test_schemathesis_per_role(name, django_user_model, wsgi_app):
    create_workflow(
        {"slug": "fuzzed", "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}]}
    )
    headers = {"Authorization": f"Token {token_for(name, django_user_model)}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    operations = list(api_operations(schema))
    assert len(operations) >= 45
    granted = ROLE_ACTIONS[Role(name)] if name != "nobody" else frozenset()
    crossings: list[str] = []
    calls = 0

    def exercise(operation, action: Action):
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)
            if action not in granted and not refused_before_the_view(case, response):
                crossings.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
                )

        run()

    for operation in operations:
        exercise(operation, required_action(schema, operation))
    assert crossings == []
    assert calls >= len(operations)
