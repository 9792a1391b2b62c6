"""Fixtures for the CDC integration tests: a real PostgreSQL database with logical
replication (the capture child process is started by ``capture_process.py``).

A missing or misconfigured service fails the test with what to run; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _admin_connection(dbname: str = "postgres"):
    import psycopg2

    try:
        conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432 as postgres: {exc}")
    conn.autocommit = True
    return conn


TEST_DATABASE_PREFIX = "dagfoundry_cdc_test_"
# The creating pytest process's pid is part of the name, so a later run can tell a database
# (and its replication slots) left by a crashed run from one a concurrent run still uses.
_TEST_DATABASE = re.compile(rf"^{TEST_DATABASE_PREFIX}(\d+)_[0-9a-f]+$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_database_and_slots(cur, name: str) -> None:
    cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active", (name,))
    cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,))
    for (slot,) in cur.fetchall():
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _drop_databases_of_dead_runs(cur) -> None:
    """Drop test databases (and their slots) whose pytest process is gone.

    Slot names are cluster-wide and some tests use fixed ones (derived from a DAG id): a slot
    left by a crashed run would make the next run's capture wait on it for ever.
    """
    cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (TEST_DATABASE_PREFIX + "%",))
    for (name,) in cur.fetchall():
        match = _TEST_DATABASE.match(name)
        if match and not _process_alive(int(match.group(1))):
            _drop_database_and_slots(cur, name)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Create a dedicated database; drop it and every replication slot on it afterwards."""
    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute("SHOW wal_level")
        if cur.fetchone()[0] != "logical":
            pytest.fail("PostgreSQL runs with wal_level != logical: run scripts/ensure_postgres_logical.sh")
        _drop_databases_of_dead_runs(cur)
        name = f"{TEST_DATABASE_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            _drop_database_and_slots(cur, name)
        admin.close()


@contextlib.contextmanager
def sql_runner(dbname: str) -> Iterator[Callable]:
    """Yield a function running SQL (optionally with parameters) in ``dbname``."""
    conn = _admin_connection(dbname)

    def run(statement: str, params=None, fetch: bool = False):
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else None

    try:
        yield run
    finally:
        conn.close()


@pytest.fixture(scope="module")
def cdc_database():
    """Create a dedicated database; drop it and every replication slot on it afterwards."""
    with fresh_database() as name:
        yield name


@pytest.fixture(scope="module")
def source_sql(cdc_database):
    """Return a function running SQL (optionally with parameters) in the test database."""
    with sql_runner(cdc_database) as run:
        yield run


@pytest.fixture(scope="session")
def new_source_database() -> Callable:
    """Return a context manager yielding ``(database, sql)`` for one more dedicated database.

    For fixtures needing a database per parameter (the randomized test runs once per mirror
    engine, each run on its own source).
    """

    @contextlib.contextmanager
    def create() -> Iterator[tuple[str, Callable]]:
        with fresh_database() as name, sql_runner(name) as run:
            yield name, run

    return create
