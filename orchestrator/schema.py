"""OpenAPI (drf-spectacular) glue: security schemes for our token authentications and the
shared error responses every API view documents.

Importing this module registers the authentication extensions; the API modules import
`error_responses` from here, so the extensions are always loaded before a schema is generated.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import ResolvedComponent, build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from orchestrator.serializers import ErrorSerializer


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>`: a user's API token."""

    target_class = "orchestrator.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Token"
        )
        scheme["description"] = 'User API token, sent as "Authorization: Token <key>".'
        return scheme


class AgentTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer <agent token>`: the token an agent received when it registered."""

    target_class = "agents.authentication.AgentTokenAuthentication"
    name = "agentTokenAuth"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer"
        )
        scheme["description"] = (
            "Agent token (from POST /api/agent/v1/register), "
            'sent as "Authorization: Bearer <token>".'
        )
        return scheme


ERROR_DESCRIPTIONS = {
    400: "Invalid input: `errors` lists every problem with its field path.",
    401: "Authentication credentials were missing or invalid.",
    403: "Authenticated, but not allowed to do this.",
    404: "Not found.",
    409: "Conflict with the current state of the resource.",
    501: "Not available on this server's configuration.",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """`{code: OpenApiResponse(ErrorSerializer)}` for the given status codes. A description can
    be overridden per code with `e404="No such execution."`."""
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code]),
        )
        for code in codes
    }


def require_model_response_fields(result, generator, **kwargs):
    """Postprocessing hook: a model serializer's output always has every field, so in its
    response component (not the `…Request` one) mark every property required. Otherwise fields
    with a model default (`status`, `labels`, …) would look optional to client generators."""
    schemas = result.get("components", {}).get("schemas", {})
    for component in getattr(generator.registry, "_components", {}).values():
        if component.type != ResolvedComponent.SCHEMA or component.name.endswith("Request"):
            continue
        if not isinstance(component.object, serializers.ModelSerializer):
            continue
        schema = schemas.get(component.name)
        if schema and schema.get("properties"):
            schema["required"] = sorted(schema["properties"])
    return result


def document_role_rules(result, generator, **kwargs):
    """Postprocessing hook: every operation checked by `orchestrator.roles.RoleRequired` says
    which action it needs and documents the 403 a user whose roles lack it gets."""
    from orchestrator.roles import ROLE_ACTIONS, RoleRequired, rule_for

    for path, _regex, method, callback in getattr(generator, "endpoints", []) or []:
        view = getattr(callback, "cls", None)
        operation = result.get("paths", {}).get(path, {}).get(method.lower())
        if view is None or operation is None:
            continue
        if not any(issubclass(p, RoleRequired) for p in view.permission_classes):
            continue
        action = rule_for(view, method)
        if action is None:
            continue
        roles = ", ".join(role.value for role, actions in ROLE_ACTIONS.items() if action in actions)
        note = f"Needs the `{action.value}` action (roles: {roles})."
        description = operation.get("description", "")
        operation["description"] = f"{description}\n\n{note}".strip()
        operation["x-required-action"] = action.value
        operation["responses"].setdefault(
            "403",
            {
                "description": ERROR_DESCRIPTIONS[403],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )
    return result


def document_unstorable_url_400(result, generator, **kwargs):
    """Postprocessing hook: any operation answers 400 when its path or a query parameter holds a
    NUL or a lone surrogate (`orchestrator.unstorable.UnstorableUrlMiddleware`)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["responses"].setdefault(
                "400",
                {
                    "description": "Invalid input, e.g. a NUL in the path or a query parameter.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            )
    return result
