"""Role rules beyond the route table: approvals need the approver role AND the node's own
approver rules, nobody reads a secret value back, roles come from groups made by the migration,
and the management commands assign them."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from approvals.models import ApprovalRequest
from executions.advancing import start_execution
from orchestrator.authentication import create_api_token
from orchestrator.models import ApiToken
from orchestrator.roles import Role, actions_of, roles_of, set_roles
from orchestrator.services import create_workflow

pytestmark = pytest.mark.django_db

GATE = {
    "slug": "gate",
    "nodes": [
        {
            "id": "ok",
            "type": "approval",
            "message": "go?",
            "timeout": "1h",
            "on": {"approved": "yes", "rejected": "no"},
        },
        {"id": "yes", "action": "shell", "with": {"command": "true"}},
        {"id": "no", "action": "shell", "with": {"command": "true"}},
    ],
}


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_api_token(user)}")
    return client


def user_with(django_user_model, name: str, *roles: str):
    user = django_user_model.objects.create_user(name, password="pw-12345678")
    set_roles(user, add=roles)
    return user


def test_the_migration_created_the_four_role_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {role.value for role in Role}
    responders = Group.objects.filter(permissions__codename="respond").values_list(
        "name", flat=True
    )
    assert sorted(responders) == ["admin", "approver"]


def test_operator_cannot_approve_an_approver_can(django_user_model):
    starter = user_with(django_user_model, "starter", "operator")
    execution = start_execution(create_workflow(GATE), user=starter)
    request = ApprovalRequest.objects.get(execution=execution)
    operator = user_with(django_user_model, "op", "operator")
    approver = user_with(django_user_model, "appr", "approver")
    refused = token_client(operator).post(
        f"/api/v1/approvals/{request.pk}/approve/", {}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": refused.json()["detail"], "errors": []}
    assert "approve is needed" in refused.json()["detail"]
    ok = token_client(approver).post(f"/api/v1/approvals/{request.pk}/approve/", {}, format="json")
    assert ok.status_code == 200, ok.content
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by == approver


def test_named_approvers_still_apply_on_top_of_the_role(django_user_model):
    named = {**GATE, "nodes": [{**GATE["nodes"][0], "approvers": {"users": ["alice"]}}]}
    named["nodes"] += GATE["nodes"][1:]
    execution = start_execution(create_workflow(named))
    request = ApprovalRequest.objects.get(execution=execution)
    other_approver = user_with(django_user_model, "bob", "approver")
    alice_without_role = user_with(django_user_model, "alice", "operator")
    for user in (other_approver, alice_without_role):
        response = token_client(user).post(
            f"/api/v1/approvals/{request.pk}/reject/", {}, format="json"
        )
        assert response.status_code == 403, user.username
    set_roles(alice_without_role, add=["approver"])
    response = token_client(alice_without_role).post(
        f"/api/v1/approvals/{request.pk}/reject/", {}, format="json"
    )
    assert response.status_code == 200


def test_no_role_reads_a_secret_value(api, django_user_model):
    value = "s3cr3t-value-for-rbac-9f8e7d"
    assert (
        api.post("/api/v1/secrets/", {"name": "tok", "value": value}, format="json").status_code
        == 201
    )
    for role in Role:
        client = token_client(user_with(django_user_model, f"u-{role}", role.value))
        for path in ("/api/v1/secrets/", "/api/v1/secrets/tok/", "/api/v1/secrets/?scope=global"):
            response = client.get(path)
            assert response.status_code == 200, (role, path)
            assert value not in response.content.decode(), (role, path)
    assert value not in api.get("/api/v1/secrets/tok/").content.decode()


def test_tokens_act_with_their_users_current_roles(django_user_model):
    user = user_with(django_user_model, "dana")
    client = token_client(user)
    assert client.get("/api/v1/executions/").status_code == 403
    set_roles(user, add=["viewer"])
    assert client.get("/api/v1/executions/").status_code == 200
    assert client.post("/api/v1/workflows/", {}, format="json").status_code == 403
    set_roles(user, add=["operator"], remove=["viewer"])
    assert client.post("/api/v1/workflows/", {}, format="json").status_code == 400


def test_roles_are_cached_per_request_not_queried_per_check(
    django_user_model, django_assert_num_queries
):
    user = user_with(django_user_model, "erin", "viewer")
    with django_assert_num_queries(1):
        assert [actions_of(user) for _ in range(5)][-1] == frozenset({"read"})


def test_users_without_a_role_see_a_403_page_and_cannot_open_the_socket_page(django_user_model):
    client = Client()
    client.force_login(user_with(django_user_model, "frank"))
    response = client.get("/executions/")
    assert response.status_code == 403
    assert b"Not allowed" in response.content


def test_issue_token_with_role_and_roles_command(django_user_model):
    out = io.StringIO()
    call_command("issue_token", "gina", "--create", "--role", "operator", stdout=out)
    raw = out.getvalue().strip()
    user = django_user_model.objects.get(username="gina")
    assert roles_of(user) == ["operator"]
    assert ApiToken.objects.filter(user=user).count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert client.post("/api/v1/workflows/", {}, format="json").status_code == 400
    out = io.StringIO()
    call_command("roles", "gina", "--add", "approver", "--remove", "operator", stdout=out)
    assert out.getvalue().strip() == "gina: approver"
    out = io.StringIO()
    call_command("roles", stdout=out)
    assert [line.split(":")[0] for line in out.getvalue().splitlines()] == [r.value for r in Role]


def test_issue_token_warns_about_a_user_without_a_role(django_user_model):
    django_user_model.objects.create_user("hal")
    err = io.StringIO()
    call_command("issue_token", "hal", stdout=io.StringIO(), stderr=err)
    assert "has no role" in err.getvalue()
