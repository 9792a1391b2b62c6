"""Fixtures for the CDC integration tests: a real PostgreSQL database with logical
replication (the capture child process is started by ``capture_process.py``).

A missing or misconfigured service fails the test with what to run; nothing is skipped.
"""

from __future__ import annotations

import uuid

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


@pytest.fixture(scope="module")
def cdc_database():
    """Create a dedicated database; drop it and every replication slot on it afterwards."""
    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute("SHOW wal_level")
        if cur.fetchone()[0] != "logical":
            pytest.fail("PostgreSQL runs with wal_level != logical: run scripts/ensure_postgres_logical.sh")
        name = f"dagfoundry_cdc_test_{uuid.uuid4().hex[:8]}"
        cur.execute(f"CREATE DATABASE {name}")
    yield name
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active", (name,)
        )
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,))
        for (slot,) in cur.fetchall():
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(scope="module")
def source_sql(cdc_database):
    """Return a function running SQL (optionally with parameters) in the test database."""
    conn = _admin_connection(cdc_database)

    def run(statement: str, params=None, fetch: bool = False):
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else None

    yield run
    conn.close()
