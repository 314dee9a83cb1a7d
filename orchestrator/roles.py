"""Roles: who may do what, in one place.

A role is a Django group (created by migration `orchestrator.0003_roles`). Each role grants a set of
actions; a user may do the union of what their roles grant, superusers may do everything, and a
user without any role may do nothing (deny by default). API tokens act with their user's roles.

Every REST view declares `role_rules` (HTTP method -> action) and is checked by `RoleRequired`
(the default permission class); every UI view is wrapped by `require_action`. The agent protocol,
webhooks, probes and approval links authenticate by their own credentials and are listed in
`SELF_AUTHENTICATED` (see docs/security.md). `tests/security/test_rbac_routes.py` fails for any
route without a rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from rest_framework import permissions


class Action(StrEnum):
    READ = "read"  # see workflows, executions, output, agents, approvals, secret names
    OPERATE = "operate"  # run/cancel/kill/rerun/replay, edit workflows, manage triggers and events
    APPROVE = "approve"  # decide approval requests (per-node approver rules still apply)
    ADMIN = "admin"  # agents, enrolment tokens, secrets, everything else


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.OPERATOR: frozenset({Action.READ, Action.OPERATE}),
    Role.APPROVER: frozenset({Action.READ, Action.OPERATE, Action.APPROVE}),
    Role.ADMIN: frozenset(Action),
}

APPROVING_ROLES: tuple[str, ...] = tuple(
    role.value for role, actions in ROLE_ACTIONS.items() if Action.APPROVE in actions
)

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.VIEWER: "reads everything except secret values",
    Role.OPERATOR: "viewer + runs, cancels, kills, reruns, replays; edits workflows and triggers",
    Role.APPROVER: "operator + decides approval requests (per-node approver rules still apply)",
    Role.ADMIN: "everything: agents, enrolment tokens, secrets",
}

SELF_AUTHENTICATED: dict[str, str] = {
    "api/agent/v1/": "agent protocol: agent bearer token or a one-time enrolment token",
    "hooks/": "webhooks: HMAC signature of the trigger (or the trigger's unguessable key)",
    "healthz": "liveness probe: no data",
    "readyz": "readiness probe: no data",
    "metrics": "Prometheus scrape: SWITCHYARD_METRICS_TOKEN bearer token when set",
    "approvals/link/": "single-use, expiring decision link; the decision is checked by role",
    "api/schema/": "the OpenAPI document (public description, no data)",
    "api/docs/": "Swagger UI for the schema",
    "api/redoc/": "ReDoc for the schema",
    "admin/": "Django admin: is_staff plus Django model permissions",
    "login/": "sign in",
    "logout/": "sign out",
    "": "redirect to /executions/",
}

ROLES_ATTR = "_switchyard_actions"


def actions_of(user: Any) -> frozenset[Action]:
    """What `user` may do (cached on the user object, so one query per request at most)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, ROLES_ATTR, None)
    if cached is not None:
        return cached
    if user.is_superuser:
        granted = ROLE_ACTIONS[Role.ADMIN]
    else:
        names = user.groups.filter(name__in=[role.value for role in Role]).values_list(
            "name", flat=True
        )
        granted = frozenset().union(*(ROLE_ACTIONS[Role(name)] for name in names))
    setattr(user, ROLES_ATTR, granted)
    return granted


def may(user: Any, action: Action) -> bool:
    return action in actions_of(user)


def roles_of(user: Any) -> list[str]:
    """Role names of `user` (superusers are admins), for display."""
    if getattr(user, "is_superuser", False):
        return [Role.ADMIN.value]
    return sorted(
        user.groups.filter(name__in=[role.value for role in Role]).values_list("name", flat=True)
    )


def set_roles(user: Any, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
    """Add `user` to / remove them from role groups (unknown role names raise ValueError)."""
    from django.contrib.auth.models import Group

    for name in [*add, *remove]:
        Role(name)
    for name in add:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    for name in remove:
        user.groups.remove(*Group.objects.filter(name=name))
    if hasattr(user, ROLES_ATTR):
        delattr(user, ROLES_ATTR)


def denial(action: Action) -> str:
    return f"Your roles do not allow this ({action.value} is needed; see docs/security.md)."


def rule_for(view: Any, method: str) -> Action | None:
    rules: dict[str, Action] = getattr(view, "role_rules", {}) or {}
    method = method.upper()
    if method in ("HEAD", "OPTIONS"):
        method = "GET" if "GET" in rules else method
    return rules.get(method)


class RoleRequired(permissions.BasePermission):
    """The default permission of the REST API: the view's `role_rules[method]` action is needed;
    a method without a rule is refused."""

    message = "Your roles do not allow this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        action = rule_for(view, request.method)
        if action is None:
            self.message = "No role grants this method."
            return False
        if not may(request.user, action):
            self.message = denial(action)
            return False
        return True


def read_write(write: Action = Action.OPERATE) -> dict[str, Action]:
    """The common rule: reading needs READ, every write needs `write`."""
    return {
        "GET": Action.READ,
        "POST": write,
        "PUT": write,
        "PATCH": write,
        "DELETE": write,
    }


READ_ONLY: dict[str, Action] = {"GET": Action.READ}
OPERATE_POST: dict[str, Action] = {"POST": Action.OPERATE}


def require_action(action: Action, *, json: bool = False) -> Callable:
    """Decorator for UI views: signed-out users go to the login page (or get a 401 JSON body when
    `json`), users whose roles lack `action` get a 403."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if json:
                    return error_json(401, "Authentication credentials were not provided.")
                return redirect_to_login(request.get_full_path())
            if not may(request.user, action):
                if json:
                    return error_json(403, denial(action))
                return render(request, "forbidden.html", {"action": action.value}, status=403)
            return view(request, *args, **kwargs)

        wrapped.required_action = action  # type: ignore[attr-defined]
        return wrapped

    return decorate


def user_actions(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: `can.read`, `can.operate`, `can.approve`, `can.admin` for the
    signed-in user, so pages hide what the server would refuse anyway."""
    granted = actions_of(getattr(request, "user", None))
    return {"can": {action.value: action in granted for action in Action}}


def error_json(status: int, detail: str) -> JsonResponse:
    return JsonResponse(
        {"detail": detail, "errors": [{"path": "", "message": detail}]}, status=status
    )
