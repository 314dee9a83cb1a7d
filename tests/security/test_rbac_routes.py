"""Every route has an explicit role rule, and each rule holds for every role.

The table below is the contract: a new endpoint (API or UI) that is not in it fails
`test_every_route_is_in_the_table`, and every row is exercised for a user with no role, each of the
four roles, and a superuser: the request is refused with 403 (in the project's error shape for the
API) exactly when the role lacks the action.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from orchestrator.authentication import create_api_token
from orchestrator.roles import (
    ROLE_ACTIONS,
    SELF_AUTHENTICATED,
    Action,
    Role,
    RoleRequired,
    set_roles,
)

pytestmark = pytest.mark.django_db

R, OP, A, X = Action.READ, Action.OPERATE, Action.APPROVE, Action.ADMIN

API = {
    ("api/v1/workflows/", "GET"): R,
    ("api/v1/workflows/", "POST"): OP,
    ("api/v1/workflows/validate/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/", "GET"): R,
    ("api/v1/workflows/<slug:slug>/", "PATCH"): OP,
    ("api/v1/workflows/<slug:slug>/", "DELETE"): OP,
    ("api/v1/workflows/<slug:slug>/versions/", "GET"): R,
    ("api/v1/workflows/<slug:slug>/versions/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/publish/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/execute/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/execute-batch/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/triggers/", "GET"): OP,
    ("api/v1/workflows/<slug:slug>/triggers/<int:trigger_id>/regenerate-key/", "POST"): OP,
    ("api/v1/workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/", "GET"): R,
    (
        "api/v1/workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/<str:delivery_id>/",
        "GET",
    ): R,
    (
        "api/v1/workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/<str:delivery_id>/"
        "redeliver/",
        "POST",
    ): OP,
    ("api/v1/events/", "GET"): R,
    ("api/v1/events/", "POST"): OP,
    ("api/v1/events/<str:event_id>/", "GET"): R,
    ("api/v1/executions/", "GET"): R,
    ("api/v1/executions/export/", "GET"): R,
    ("api/v1/executions/bulk/", "POST"): OP,
    ("api/v1/executions/<str:execution_id>/", "GET"): R,
    ("api/v1/executions/<str:execution_id>/", "PATCH"): OP,
    ("api/v1/executions/<str:execution_id>/", "DELETE"): OP,
    ("api/v1/executions/<str:execution_id>/rerun/", "POST"): OP,
    ("api/v1/executions/<str:execution_id>/replay/", "POST"): OP,
    ("api/v1/executions/<str:execution_id>/log/", "GET"): R,
    ("api/v1/executions/<str:execution_id>/jobs/<str:job_id>/output/", "GET"): R,
    ("api/v1/executions/<str:execution_id>/cancel/", "POST"): OP,
    ("api/v1/executions/<str:execution_id>/kill/", "POST"): OP,
    ("api/v1/executions/<str:execution_id>/evaluate/", "POST"): R,
    ("api/v1/executions/<str:execution_id>/diagnose/", "POST"): R,
    ("api/v1/executions/<str:execution_id>/diff/", "GET"): R,
    ("api/v1/analytics/summary", "GET"): R,
    ("api/v1/analytics/summary/", "GET"): R,
    ("api/v1/analytics/flaky", "GET"): R,
    ("api/v1/analytics/flaky/", "GET"): R,
    ("api/v1/approvals/", "GET"): R,
    ("api/v1/approvals/<int:approval_id>/", "GET"): R,
    ("api/v1/approvals/<int:approval_id>/approve/", "POST"): A,
    ("api/v1/approvals/<int:approval_id>/reject/", "POST"): A,
    ("api/v1/secrets/", "GET"): R,
    ("api/v1/secrets/", "POST"): X,
    ("api/v1/secrets/<str:name>/", "GET"): R,
    ("api/v1/secrets/<str:name>/", "PATCH"): X,
    ("api/v1/secrets/<str:name>/", "DELETE"): X,
    ("api/v1/agents/", "GET"): R,
    ("api/v1/agents/enrollment-tokens/", "GET"): X,
    ("api/v1/agents/enrollment-tokens/", "POST"): X,
    ("api/v1/agents/enrollment-tokens/<int:token_id>/revoke/", "POST"): X,
    ("api/v1/agents/<str:name>/revoke/", "POST"): X,
    ("api/v1/pools/", "GET"): R,
}

UI = {
    ("executions/", "GET"): R,
    ("executions/views/", "POST"): R,
    ("executions/views/<int:view_id>/delete/", "POST"): R,
    ("executions/<str:execution_id>/", "GET"): R,
    ("executions/<str:execution_id>/state/", "GET"): R,
    ("executions/<str:execution_id>/events/", "GET"): R,
    ("executions/<str:execution_id>/diff/", "GET"): R,
    ("executions/<str:execution_id>/diagnosis/", "GET"): R,
    ("workflows/", "GET"): R,
    ("workflows/new/", "GET"): OP,
    ("workflows/<slug:slug>/", "GET"): R,
    ("workflows/<slug:slug>/edit/", "GET"): OP,
    ("agents/", "GET"): R,
    ("agents/<str:name>/", "GET"): R,
    ("approvals/", "GET"): R,
    ("approvals/pending.json", "GET"): R,
    ("analytics/", "GET"): R,
    ("settings/", "GET"): R,
}

SAMPLE = {
    "<slug:slug>": "no-such-workflow",
    "<int:trigger_id>": "999999",
    "<str:delivery_id>": "00000000-0000-0000-0000-000000000000",
    "<str:event_id>": "00000000-0000-0000-0000-000000000000",
    "<str:execution_id>": "00000000-0000-0000-0000-000000000000",
    "<str:job_id>": "00000000-0000-0000-0000-000000000000",
    "<int:approval_id>": "999999",
    "<str:name>": "no-such-name",
    "<int:token_id>": "999999",
    "<int:view_id>": "999999",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
SUBJECTS = ["nobody", *[role.value for role in Role], "superuser"]


def routes(resolver: URLResolver | None = None, prefix: str = ""):
    """(route, callback) for every URL pattern, includes flattened."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def self_authenticated(route: str) -> bool:
    return any(
        route == prefix or (prefix.endswith("/") and route.startswith(prefix))
        for prefix in SELF_AUTHENTICATED
        if prefix
    ) or (route == "")


def role_checked_methods(route: str, callback) -> list[tuple[str, str]]:
    view = getattr(callback, "cls", None)
    if view is not None and any(issubclass(p, RoleRequired) for p in view.permission_classes):
        return [(route, m.upper()) for m in HTTP_METHODS if hasattr(view, m)]
    if hasattr(callback, "required_action"):
        return [(route, "*")]
    return []


def test_every_route_is_in_the_table_or_authenticates_itself():
    checked: set[tuple[str, str]] = set()
    unruled = []
    for route, callback in routes():
        found = role_checked_methods(route, callback)
        if found:
            checked.update(found)
        elif not self_authenticated(route):
            unruled.append(route)
    assert unruled == [], "routes without a role rule (add one, see orchestrator.roles)"
    api_checked = {key for key in checked if key[0].startswith("api/")}
    assert api_checked == set(API)
    ui_routes = {route for route, _ in checked if not route.startswith("api/")}
    assert ui_routes == {route for route, _ in UI}


def test_the_table_matches_the_views_own_rules():
    by_route = dict(routes())
    for (route, method), action in API.items():
        view = by_route[route].cls
        assert view.role_rules[method] == action, (route, method)
    for (route, _), action in UI.items():
        assert by_route[route].required_action == action, route


def url_for(route: str) -> str:
    for placeholder, value in SAMPLE.items():
        route = route.replace(placeholder, value)
    assert "<" not in route, route
    return "/" + route


def subject(name: str, django_user_model):
    if name == "superuser":
        return django_user_model.objects.create_superuser(name, password="pw-12345678")
    user = django_user_model.objects.create_user(name, password="pw-12345678")
    if name != "nobody":
        set_roles(user, add=[name])
    return user


def allowed(name: str, action: Action) -> bool:
    if name == "superuser":
        return True
    return name != "nobody" and action in ROLE_ACTIONS[Role(name)]


@pytest.mark.parametrize("name", SUBJECTS)
def test_api_rules_hold_for_every_role(name, django_user_model):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {create_api_token(subject(name, django_user_model))}"
    )
    wrong = []
    for (route, method), action in API.items():
        response = client.generic(
            method, url_for(route), data="{}", content_type="application/json"
        )
        assert response.status_code < 500, (route, method, response.status_code)
        refused = response.status_code == 403
        if refused:
            body = response.json()
            assert set(body) == {"detail", "errors"}, body
        if refused == allowed(name, action):
            wrong.append((method, route, response.status_code))
    assert wrong == []


@pytest.mark.parametrize("name", SUBJECTS)
def test_ui_rules_hold_for_every_role(name, django_user_model):
    client = Client()
    client.force_login(subject(name, django_user_model))
    wrong = []
    for (route, method), action in UI.items():
        response = client.generic(
            method, url_for(route), data="{}", content_type="application/json"
        )
        assert response.status_code < 500, (route, method, response.status_code)
        if (response.status_code == 403) == allowed(name, action):
            wrong.append((method, route, response.status_code))
    assert wrong == []


def test_signed_out_requests_are_401_for_the_api_and_go_to_login_for_pages(db):
    api, browser = APIClient(), Client()
    for route, method in API:
        response = api.generic(method, url_for(route))
        assert response.status_code == 401, (route, method)
    for route, method in UI:
        response = browser.generic(method, url_for(route))
        if route.endswith(("/state/", "/events/", ".json", "views/", "/delete/")):
            assert response.status_code == 401, route
        else:
            assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_asking_the_llm_needs_the_operator_role(django_user_model, client):
    """The diagnosis is readable by viewers; asking the LLM (a paid call whose answer is stored)
    is an operator's action, on the API and on the page."""
    from rest_framework.test import APIClient

    from orchestrator.authentication import create_api_token

    viewer = subject("viewer", django_user_model)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {create_api_token(viewer)}")
    execution = SAMPLE["<str:execution_id>"]
    url = f"/api/v1/executions/{execution}/diagnose/"
    assert api.post(url, {"llm": True}, format="json").status_code == 403
    assert api.post(url, {"llm": False}, format="json").status_code == 404
    client.force_login(viewer)
    assert client.post(f"/executions/{execution}/diagnosis/").status_code == 403
    assert client.get(f"/executions/{execution}/diagnosis/").status_code == 404
