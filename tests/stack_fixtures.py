"""The real stack for the end-to-end and browser suites (see `orchestrator.localstack`): uvicorn
(ASGI), the control Celery worker with beat, and agents enrolled through the real CLI, on a
dedicated PostgreSQL database and Redis database; process logs are attached to failing tests'
reports. Imported once by tests/conftest.py so both suites share ONE session stack: two stacks on
one Redis database would consume each other's queues.

`SWITCHYARD_E2E_SCALE=N` (`make test-scaleout`: 2) scales the stack out: N uvicorn processes on
their own ports, which the API clients use in turn, and N control workers, each with its own
beat scheduler, all on the same PostgreSQL and Redis databases."""

from __future__ import annotations

import os
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings

from orchestrator.localstack import LocalStack, Postgres, free_port, redis_url_with_db

E2E_REDIS_DB = int(os.environ.get("SWITCHYARD_E2E_REDIS_DB", "15"))
E2E_DATABASE = os.environ.get("SWITCHYARD_E2E_DATABASE", f"switchyard_e2e_{os.getpid()}")
E2E_SCALE = int(os.environ.get("SWITCHYARD_E2E_SCALE", "1"))


class Mailbox:
    """Messages received by the test's SMTP server."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"


@pytest.fixture(scope="session")
def mailbox():
    """A real SMTP server on loopback that the control worker sends approval mail to."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, mailbox):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("end-to-end tests need PostgreSQL: set DATABASE_URL (`make test` does)")
    postgres = Postgres(
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
    )
    stack = LocalStack(
        workdir=tmp_path_factory.mktemp("stack"),
        database=E2E_DATABASE,
        postgres=postgres,
        redis_url=redis_url_with_db(settings.REDIS_URL, E2E_REDIS_DB),
        extra_env={
            "SWITCHYARD_SWEEP_INTERVAL": "0.5",
            "SWITCHYARD_REPUBLISH_PENDING_AFTER": "1",
            "SWITCHYARD_HEARTBEAT_INTERVAL": "1",
            "SWITCHYARD_JOB_TIMEOUT_GRACE": "5",
            "SWITCHYARD_NETWORK_ALLOW": "127.0.0.0/8",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(mailbox[1]),
        },
    )
    try:
        stack.start(web_processes=E2E_SCALE, control_workers=E2E_SCALE)
        stack.start_agent("e2e-agent", ["default", "e2e"])
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and stack is not None:
        report.sections.append(("stack logs", stack.logs()))
