"""Structured logs: JSON lines with correlation fields, selected by LOG_FORMAT."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

from orchestrator.logging import JsonFormatter, TextFormatter

ROOT = Path(__file__).resolve().parents[2]


def record(**extra) -> logging.LogRecord:
    logger = logging.getLogger("switchyard.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "job %s failed", ("abc",), None, extra=extra
    )


def test_json_line_has_the_fields_and_the_execution_id():
    execution_id = uuid.uuid4()
    line = JsonFormatter().format(record(execution_id=execution_id, job_id="j-1", rows={"a": 1}))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "switchyard.test"
    assert entry["message"] == "job abc failed"
    assert entry["execution_id"] == str(execution_id)
    assert entry["job_id"] == "j-1"
    assert entry["rows"] == {"a": 1}
    assert entry["time"].endswith("+00:00")
    assert list(entry)[:6] == ["time", "level", "logger", "message", "execution_id", "job_id"]


def test_json_line_without_extras_and_with_an_exception():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger = logging.getLogger("switchyard.test")
        rec = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(rec))
    assert "execution_id" not in entry and "job_id" not in entry
    assert "ValueError: boom" in entry["exception"]


def test_text_format_appends_the_correlation_fields():
    text = TextFormatter().format(record(execution_id="e-1", job_id="j-1"))
    assert text.endswith("WARNING switchyard.test: job abc failed [execution_id=e-1 job_id=j-1]")
    assert "[" not in TextFormatter().format(record())


def run_django_logging(log_format: str) -> str:
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('switchyard.probe').info('hello', extra={'execution_id': 'e-42'})"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrator.settings"}
    env["LOG_FORMAT"] = log_format
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_settings_select_the_json_formatter_from_log_format():
    entry = json.loads(run_django_logging("json"))
    assert entry["message"] == "hello"
    assert entry["execution_id"] == "e-42"
    assert entry["logger"] == "switchyard.probe"
    text = run_django_logging("text")
    assert text.endswith("INFO switchyard.probe: hello [execution_id=e-42]")
