"""A batch of runs started in one request runs end to end on a real agent: the doorbells rung
for the first few and the reports that pull the rest take every run to the end, each step
once."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.helpers import TERMINAL
from tests.support import wait_until

pytestmark = pytest.mark.e2e

RUNS = 40


def test_a_batch_of_runs_completes_with_every_step_run_once(stack, tmp_path):
    ledger = tmp_path / "ledger.txt"
    step = {"action": "shell", "with": {"command": f'echo "$SWITCHYARD_JOB_ID" >> {ledger}'}}
    definition = {
        "slug": "e2e-batch",
        "inputs": {"n": {"type": "integer", "required": True}},
        "nodes": [{"id": "first", **step, "on": {"success": "second"}}, {"id": "second", **step}],
    }
    with stack.client() as client:
        assert client.post("/api/v1/workflows/", json={"definition": definition}).status_code == 201
        response = client.post(
            "/api/v1/workflows/e2e-batch/execute-batch/",
            json={"runs": [{"inputs": {"n": n}, "labels": {"batch": "e2e"}} for n in range(RUNS)]},
        )
        assert response.status_code == 201, response.text
        ids = [run["id"] for run in response.json()["results"]]
        assert len(set(ids)) == RUNS

        def finished() -> list[dict] | None:
            page = client.get("/api/v1/executions/?label=batch=e2e&page_size=100").json()
            rows = page["results"]
            return (
                rows if len(rows) == RUNS and all(r["status"] in TERMINAL for r in rows) else None
            )

        rows = wait_until(finished, timeout=120, what=f"{RUNS} batched runs to finish")
        assert {row["id"] for row in rows} == set(ids)
        assert {row["status"] for row in rows} == {"completed"}
        inputs = sorted(
            client.get(f"/api/v1/executions/{i}/").json()["inputs"]["n"] for i in ids[:3]
        )
        assert inputs == [0, 1, 2]

    ran = Counter(ledger.read_text().split())
    assert len(ran) == 2 * RUNS, "every step of every run ran"
    assert set(ran.values()) == {1}, "and none twice"
