"""`is_database_unavailable` on real errors: an unreachable, cut or full server is unavailable
(503); a query that fails on a healthy connection is a bug (500), even when the driver classes
it OperationalError."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from psycopg_pool import PoolTimeout

from orchestrator.db_unavailable import is_database_unavailable
from tests.support import wait_until

# Django's own connections below are opened outside the test transaction; pytest-django only
# lets them connect in a database test.
pytestmark = pytest.mark.django_db


def raised(action: Callable[[], object]) -> BaseException:
    """The exception `action` raises (the test fails if it raises none)."""
    with pytest.raises(Exception) as info:
        action()
    return info.value


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server(**changes: object) -> dict[str, object]:
    """Connection parameters of the suite's PostgreSQL server (its maintenance database)."""
    db = connections["default"].settings_dict
    params = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"] or None,
        "password": db["PASSWORD"] or None,
        "dbname": "postgres",
        "connect_timeout": 5,
    }
    return {key: value for key, value in (params | changes).items() if value is not None}


def django_postgres(alias: str, **changes: object) -> BaseDatabaseWrapper:
    """A Django connection of its own (no pool unless `OPTIONS` says so) to the suite's server,
    so errors arrive wrapped by Django exactly as views see them."""
    default = connections["default"]
    settings_dict = {
        **default.settings_dict,
        "OPTIONS": {},
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        **changes,
    }
    return type(default)(settings_dict, alias=alias)


@pytest.fixture
def admin() -> Iterator[psycopg.Connection]:
    with psycopg.connect(**server(), autocommit=True) as conn:
        yield conn


def terminate(admin: psycopg.Connection, pid: int) -> None:
    """pg_terminate_backend, then wait until the backend has really exited."""
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(
        lambda: (
            admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None
        ),
        timeout=10,
        what=f"backend {pid} to exit",
    )


def test_a_refused_connection_is_unavailable(closed_port):
    error = raised(lambda: psycopg.connect(**server(port=closed_port)))
    assert isinstance(error, psycopg.OperationalError) and error.sqlstate is None
    assert is_database_unavailable(error)

    wrapper = django_postgres("refused", PORT=closed_port)
    wrapped = raised(wrapper.ensure_connection)
    assert isinstance(wrapped, DatabaseError) and wrapped.__cause__ is not None
    assert is_database_unavailable(wrapped)


def test_a_pool_timeout_is_unavailable(closed_port):
    wrapper = django_postgres(
        "pooled-refused",
        PORT=closed_port,
        OPTIONS={"pool": {"min_size": 0, "max_size": 1, "timeout": 0.5}},
    )
    try:
        wrapped = raised(wrapper.ensure_connection)
    finally:
        wrapper.close_pool()
    assert isinstance(wrapped.__cause__, PoolTimeout)
    assert is_database_unavailable(wrapped)


def test_a_terminated_backend_is_unavailable(admin):
    """What a restart or failover does to an open connection: the server ends the backend
    (57P01), then every later use finds the connection closed."""
    victim = psycopg.connect(**server(), autocommit=True)
    terminate(admin, victim.info.backend_pid)
    cut = raised(lambda: victim.execute("SELECT 1"))
    closed = raised(lambda: victim.execute("SELECT 1"))
    victim.close()
    assert isinstance(cut, psycopg.OperationalError)
    assert is_database_unavailable(cut)
    assert isinstance(closed, psycopg.OperationalError) and closed.sqlstate is None
    assert is_database_unavailable(closed)

    wrapper = django_postgres("terminated", NAME="postgres")
    wrapper.ensure_connection()
    terminate(admin, wrapper.connection.info.backend_pid)
    with wrapper.cursor() as cursor:
        wrapped = raised(lambda: cursor.execute("SELECT 1"))
    wrapper.close()
    assert isinstance(wrapped, DatabaseError) and wrapped.__cause__ is not None
    assert is_database_unavailable(wrapped)


def test_too_many_connections_is_unavailable(admin):
    role = f"switchyard_full_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        error = raised(lambda: psycopg.connect(**server(user=role, password=None)))
    finally:
        admin.execute(f'DROP ROLE "{role}"')
    assert "too many connections" in str(error)
    assert is_database_unavailable(error)


def test_query_errors_on_a_healthy_postgres_connection_stay_500():
    wrapper = django_postgres("healthy", NAME="postgres")
    try:
        with wrapper.cursor() as cursor:
            syntax = raised(lambda: cursor.execute("SELEC 1"))
        with wrapper.cursor() as cursor:
            cursor.execute("SET statement_timeout = 1")
            canceled = raised(lambda: cursor.execute("SELECT pg_sleep(1)"))
    finally:
        wrapper.close()
    assert isinstance(syntax.__cause__, psycopg.errors.SyntaxError)
    assert not is_database_unavailable(syntax)
    # QueryCanceled is an OperationalError, yet the server is fine: a bug or a slow query.
    assert isinstance(canceled.__cause__, psycopg.errors.QueryCanceled)
    assert isinstance(canceled.__cause__, psycopg.OperationalError)
    assert not is_database_unavailable(canceled)


def sqlite(path: str, alias: str) -> SQLiteWrapper:
    return SQLiteWrapper(
        {**connections["default"].settings_dict, "NAME": path, "OPTIONS": {"timeout": 0}},
        alias=alias,
    )


def test_a_sqlite_syntax_error_stays_500_and_a_locked_database_is_unavailable(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    wrapper = sqlite(path, "sqlite-syntax")
    with wrapper.cursor() as cursor:
        syntax = raised(lambda: cursor.execute("SELEC 1"))
    wrapper.close()
    assert isinstance(syntax.__cause__, sqlite3.OperationalError)
    assert not is_database_unavailable(syntax)

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    other = sqlite(path, "sqlite-locked")
    with other.cursor() as cursor:
        locked = raised(lambda: cursor.execute("INSERT INTO t VALUES (2)"))
    other.close()
    writer.close()
    assert "database is locked" in str(locked)
    assert is_database_unavailable(locked)


def test_errors_that_are_not_database_errors_are_not_unavailable():
    assert not is_database_unavailable(raised(lambda: 1 / 0))
    assert not is_database_unavailable(raised(lambda: socket.create_connection(("127.0.0.1", 0))))
