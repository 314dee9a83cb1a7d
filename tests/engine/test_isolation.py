"""The engine must stay importable without Django (agents and property tests rely on it)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_imports_without_django():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, orchestrator.engine; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_engine_sources_do_not_import_project_packages():
    forbidden = ("django", "executions", "agents", "approvals", "celery")
    for path in (ROOT / "orchestrator" / "engine").glob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                assert not module.startswith(forbidden), f"{path.name}: {stripped}"
                assert not (module.startswith("orchestrator") and "engine" not in module), (
                    f"{path.name}: {stripped}"
                )
