"""`manage.py check --deploy` is clean with the documented production environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "SWITCHYARD_REQUIRE_SECRET_KEY": "1",
    "ALLOWED_HOSTS": "switchyard.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://switchyard.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO",
}


def check_deploy(extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "SESSION_", "CSRF_", "DEBUG", "SECRET_KEY"))
    }
    env["DATABASE_URL"] = os.environ.get("DATABASE_URL", "")
    env.update(extra)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = check_deploy(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_check_fails_without_https_settings():
    env = {k: v for k, v in PRODUCTION_ENV.items() if not k.startswith("SECURE_")}
    result = check_deploy(env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout


def test_env_example_documents_every_production_variable():
    text = (ROOT / ".env.example").read_text()
    for name in PRODUCTION_ENV:
        assert name in text, name
    assert settings.SECURE_REDIRECT_EXEMPT


def test_ssl_redirect_spares_probes_metrics_and_the_agent_protocol(settings, db):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/api/v1/executions/").status_code == 301
    assert client.get("/executions/")["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    assert client.post("/api/agent/v1/heartbeat", {}).status_code == 401
    assert client.get("/api/v1/executions/", secure=True).status_code == 401
