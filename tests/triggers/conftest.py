"""Helpers for the trigger tests: workflows with triggers, signed webhook requests."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from orchestrator.models import Trigger
from orchestrator.secret_store import save_secret
from orchestrator.services import create_workflow

SHELL = {"id": "work", "action": "shell", "with": {"command": "echo hi"}}
# No action node: nothing is published to the broker when such a run starts in a test that
# commits (the run waits on a control-plane timer instead).
WAIT = {"id": "hold", "type": "wait", "duration": "1h"}


def workflow_with(slug: str, triggers: list[dict], nodes: list[dict] | None = None, **extra):
    return create_workflow({"slug": slug, "nodes": nodes or [SHELL], "triggers": triggers, **extra})


def hmac_hex(secret: str, message: bytes) -> str:
    """The documented signature, computed independently of the code under test."""
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def post_hook(client, key: str, body: bytes | dict | str = b"{}", **headers):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    return client.post(
        f"/hooks/{key}",
        data=body,
        content_type=headers.pop("content_type", "application/json"),
        headers=headers,
    )


@pytest.fixture
def webhook_trigger(db):
    """A webhook trigger signed with the stored secret `hook_secret` (value `s3cret-value`)."""
    workflow = workflow_with(
        "hooked",
        [{"type": "webhook", "secret": "{{ secrets.hook_secret }}"}],
    )
    save_secret("hook_secret", "s3cret-value", workflow=workflow)
    return Trigger.objects.get(workflow=workflow, kind="webhook")
