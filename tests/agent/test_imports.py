"""The agent must install and run without Django or any control-plane package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AGENT_DIR = REPO / "agents" / "agent"
ALLOWED_THIRD_PARTY = {"asyncssh", "celery", "kombu", "httpx"}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_agent_imports_without_django_installed() -> None:
    """Simulate an agent host: ``import django`` fails, as it would without the package.

    (In this dev environment Django *is* installed, and kombu/celery probe for
    ``django.utils.functional`` on import; blocking it is what an agent host looks like.)
    """
    code = """
import sys

class NoDjango:
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoDjango())
import agents.agent.cli, agents.agent.worker, agents.agent.runner
assert "switchyard.run_job" == agents.agent.worker.TASK_NAME
assert "django" not in sys.modules
project = ("orchestrator", "executions", "approvals")
loaded = [m for m in sys.modules if m.split(".")[0] in project]
assert not loaded, loaded
print("ok")
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_agent_does_not_load_django_framework() -> None:
    """With Django installed, importing the agent must not configure or load Django itself."""
    result = _run(
        "import sys, agents.agent.cli, agents.agent.worker\n"
        "bad = [m for m in sys.modules if m.startswith(('django.conf', 'django.db', "
        "'django.apps', 'django.core', 'orchestrator', 'executions', 'approvals'))]\n"
        "assert not bad, bad\n"
    )
    assert result.returncode == 0, result.stderr


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            assert node.module
            names.add(node.module)
    return names


def test_only_stdlib_celery_kombu_httpx_are_imported() -> None:
    modules = sorted(AGENT_DIR.rglob("*.py"))
    assert modules
    for path in modules:
        for root in {name.split(".")[0] for name in _imported_names(path)}:
            if root == "agents":
                continue
            assert root in sys.stdlib_module_names or root in ALLOWED_THIRD_PARTY, (
                f"{path.relative_to(REPO)} imports {root!r}"
            )
    agents_imports = {
        name for path in modules for name in _imported_names(path) if name.split(".")[0] == "agents"
    }
    assert all(name.startswith("agents.agent") for name in agents_imports), agents_imports
