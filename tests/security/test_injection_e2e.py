"""Template injection on the real stack: hostile inputs reach shell steps written with the
documented safe patterns (`| shell_quote`, or `env:`) as plain data, so the canary file they try
to create never appears and each step prints the input back byte for byte. A control run with
raw interpolation (the pattern the docs warn against) does create the canary, which shows the
canary can appear at all."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import create, execute, wait_for_status

pytestmark = pytest.mark.e2e


def hostile_values(canary: str) -> list[str]:
    return [
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"; touch {canary}",
        f"x && touch {canary}",
        f"x | touch {canary}",
        f"x\ntouch {canary}",
        f"x\r\ntouch {canary}",
        f"' ; touch {canary} ; '",
        f'" ; touch {canary} ; "',
        f"$'\\x3b' touch {canary}",
        "--flag",
        "-rf",
        "--output=/etc/passwd",
        "{{ 7 * 7 }}",
        "{{ secrets.anything }}",
        "${IFS}$((6*7))",
        "*",
        "",
    ]


SAFE = {
    "slug": "sec-injection-safe",
    "inputs": {"value": {"type": "string"}, "scratch": {"type": "string"}},
    "nodes": [
        {
            "id": "quoted",
            "action": "shell",
            "with": {"command": "printf '%s' {{ inputs.value | shell_quote }}"},
            "on": {"success": "env"},
        },
        {
            "id": "env",
            "action": "shell",
            "with": {"command": "printf '%s' \"$VALUE\"", "env": {"VALUE": "{{ inputs.value }}"}},
            "on": {"success": "dashdash"},
        },
        {
            "id": "dashdash",
            "action": "shell",
            "with": {
                "command": 'cd "$SCRATCH" && touch -- {{ inputs.value | shell_quote }} && ls -A',
                "env": {"SCRATCH": "{{ inputs.scratch }}"},
            },
        },
    ],
}

UNSAFE = {
    "slug": "sec-injection-control",
    "inputs": {"value": {"type": "string"}},
    "nodes": [{"id": "raw", "action": "shell", "with": {"command": "echo {{ inputs.value }}"}}],
}


def stdout_of(execution: dict, node_id: str) -> str:
    return next(job["stdout"] for job in execution["jobs"] if job["node_id"] == node_id)


def test_hostile_inputs_stay_data_with_the_documented_patterns(stack, tmp_path):
    canary = tmp_path / "canary"
    values = hostile_values(str(canary))
    with stack.client() as client:
        create(client, SAFE)
        started = []
        for index, value in enumerate(values):
            scratch = tmp_path / f"scratch-{index}"
            scratch.mkdir()
            inputs = {"value": value, "scratch": str(scratch)}
            started.append((value, scratch, execute(client, SAFE["slug"], inputs)["id"]))
        results = [(v, s, wait_for_status(client, i, timeout=120)) for v, s, i in started]
    assert not canary.exists()
    for value, scratch, execution in results:
        assert stdout_of(execution, "quoted") == value
        assert stdout_of(execution, "env") == value
        if value and "/" not in value:
            assert execution["status"] == "completed", (value, execution["error"])
            assert [p.name for p in scratch.iterdir()] == [value]
    assert not canary.exists()


def test_control_raw_interpolation_does_run_the_injected_command(stack, tmp_path):
    canary = tmp_path / "canary"
    with stack.client() as client:
        create(client, UNSAFE)
        started = execute(client, UNSAFE["slug"], {"value": f"$(touch {canary})"})
        execution = wait_for_status(client, started["id"])
    assert execution["status"] == "completed"
    assert canary.exists()
