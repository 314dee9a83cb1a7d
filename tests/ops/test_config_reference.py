"""Every environment variable the code reads is documented (issue #11, item 6): in the
configuration reference of docs/operations.md, and, for the control plane's settings, in
.env.example too."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "executions", "agents", "approvals")
READ = re.compile(
    r"""(?:environ\.get|environ\.setdefault|getenv|env_\w+)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""
)
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE"}


def variables_read(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for match in READ.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names - NOT_CONFIGURATION


def test_the_scan_finds_the_settings_variables():
    found = variables_read([ROOT / "orchestrator" / "settings.py"])
    assert {"DATABASE_URL", "REDIS_URL", "SWITCHYARD_RETENTION_DAYS", "LOG_FORMAT"} <= found


def test_every_variable_is_in_the_configuration_reference():
    code = [
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
    ]
    reference = (ROOT / "docs" / "operations.md").read_text()
    missing = sorted(name for name in variables_read(code) if f"`{name}`" not in reference)
    assert missing == []


def test_every_setting_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    settings_vars = variables_read([ROOT / "orchestrator" / "settings.py"])
    missing = sorted(
        name for name in settings_vars if not re.search(rf"^#? ?{name}=", example, re.M)
    )
    assert missing == []
