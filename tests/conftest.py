"""Suite-wide fixtures: API clients with real users and tokens."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from orchestrator.authentication import create_api_token
from tests.stack_fixtures import mailbox, pytest_runtest_makereport, stack  # noqa: F401


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw-root-123")


@pytest.fixture
def api(admin_user) -> APIClient:
    """A DRF client authenticated with a real hashed API token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {create_api_token(admin_user)}")
    return client


@pytest.fixture(autouse=True, scope="session")
def live_events_sent_inline():
    """In-process tests see live messages synchronously (and no thread outlives a test's
    database); the end-to-end suites run the real processes with the background publisher."""
    from django.conf import settings

    settings.SWITCHYARD_LIVE_IN_BACKGROUND = False


@pytest.fixture(autouse=True, scope="session")
def celery_runs_tasks_inline():
    """In-process tests run control-worker tasks (e.g. notifications) inline; the end-to-end
    suites use a real worker."""
    from orchestrator.celery_app import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
