"""Test helpers shared by the suites."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns a truthy value and return it; fail after `timeout` seconds.

    This is how tests synchronise with other processes: on a condition with a deadline, never a
    fixed sleep. The short pause between polls only bounds the polling rate.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or probe}: {last!r}"
            )
        time.sleep(interval)


def run_in_fresh_django(code: str, database_url: str, var_dir: Path, **env: str) -> list[str]:
    """Run `code` in a new Python process with Django configured for `database_url` (settings
    are read at start-up, so another database needs another process); returns its stdout
    lines and fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=os.environ
        | {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
            "SWITCHYARD_VAR_DIR": str(var_dir),
        }
        | env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()
