"""Shared steps of the end-to-end tests."""

from __future__ import annotations

from datetime import datetime

from tests.support import wait_until

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def create(client, definition) -> dict:
    response = client.post("/api/v1/workflows/", json={"definition": definition})
    assert response.status_code == 201, response.text
    return response.json()


def execute(client, slug: str, inputs: dict | None = None) -> dict:
    response = client.post(f"/api/v1/workflows/{slug}/execute/", json={"inputs": inputs or {}})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(client, execution_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
    def reached():
        body = client.get(f"/api/v1/executions/{execution_id}/").json()
        return body if body["status"] in statuses else None

    return wait_until(reached, timeout=timeout, what=f"execution {execution_id} in {statuses}")


def run(client, definition, inputs: dict | None = None, timeout: float = 60) -> dict:
    create(client, definition)
    slug = definition["slug"]
    return wait_for_status(client, execute(client, slug, inputs)["id"], timeout=timeout)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def node_statuses(execution: dict) -> dict[str, str]:
    return {node["id"]: node["status"] for node in execution["nodes"]}
