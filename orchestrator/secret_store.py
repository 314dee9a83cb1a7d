"""Named secrets: scoping, lookup, and masking of their values wherever output lands.

Templates never see a value while a job is planned (`secrets.<name>` renders as `***`, so stored
params, logs and the API hold no values); values are rendered only into the claim response.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

from django.db.models import Q

from orchestrator.models import Secret, Workflow
from orchestrator.secret_box import decrypt, encrypt

MASK = "***"
SECRET_REFERENCE = re.compile(r"secrets\s*(?:\.\s*|\[\s*['\"])([A-Za-z_][A-Za-z0-9_-]*)")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")
MIN_MASKED_LENGTH = 3


def referenced_secrets(text: str) -> set[str]:
    return set(SECRET_REFERENCE.findall(text))


def visible_secrets(workflow: Workflow | None):
    """Global secrets plus the workflow's own (a scoped secret overrides a global one)."""
    scope = Q(workflow__isnull=True)
    if workflow is not None:
        scope |= Q(workflow=workflow)
    return Secret.objects.filter(scope)


def secret_names(workflow: Workflow | None) -> set[str]:
    return set(visible_secrets(workflow).values_list("name", flat=True))


def resolve(workflow: Workflow | None, names: set[str] | list[str]) -> dict[str, Secret]:
    chosen: dict[str, Secret] = {}
    for secret in visible_secrets(workflow).filter(name__in=list(names)):
        if secret.name not in chosen or secret.workflow_id is not None:
            chosen[secret.name] = secret
    return chosen


def reveal(workflow: Workflow | None, names: set[str] | list[str]) -> dict[str, str]:
    return {name: decrypt(secret.ciphertext) for name, secret in resolve(workflow, names).items()}


SENSITIVE_FIELD = re.compile(r"pass|key|token|secret|auth|credential|cookie", re.IGNORECASE)


def sensitive_values(value: str) -> list[str]:
    """What to mask for one secret: its value, or for a connection (a JSON object of params)
    the values of its sensitive fields (passwords, keys, tokens, auth headers), not host names."""
    try:
        bundle = json.loads(value)
    except ValueError:
        return [value]
    if not isinstance(bundle, dict):
        return [value]
    found = [value]

    def walk(mapping: dict) -> None:
        for key, item in mapping.items():
            if isinstance(item, dict):
                walk(item)
            elif isinstance(item, str) and SENSITIVE_FIELD.search(str(key)):
                found.append(item)

    walk(bundle)
    return found


def masked_forms(values: list[str]) -> list[str]:
    """Each value plus its common encodings (base64, URL-encoded), longest first."""
    forms: set[str] = set()
    for value in values:
        if len(value) < MIN_MASKED_LENGTH:
            continue
        raw = value.encode()
        forms |= {
            value,
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            quote(value, safe=""),
            quote_plus(value),
        }
    return sorted((form for form in forms if len(form) >= MIN_MASKED_LENGTH), key=len, reverse=True)


def mask(value: Any, forms: list[str]) -> Any:
    """Replace every form of every secret in strings anywhere inside `value`."""
    if not forms:
        return value
    if isinstance(value, str):
        for form in forms:
            if form in value:
                value = value.replace(form, MASK)
        return value
    if isinstance(value, dict):
        return {key: mask(item, forms) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, forms) for item in value]
    return value


def save_secret(
    name: str, value: str, *, workflow: Workflow | None = None, description: str = "", user=None
) -> Secret:
    secret = Secret.objects.filter(name=name, workflow=workflow).first() or Secret(
        name=name, workflow=workflow, created_by=user
    )
    secret.ciphertext = encrypt(value)
    if description or secret.pk is None:
        secret.description = description
    secret.save()
    return secret
