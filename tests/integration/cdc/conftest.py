"""Fixtures for the CDC integration tests: a real PostgreSQL database with logical
replication, the embedded Debezium engine in a child process, and a lake directory.

A missing or misconfigured service fails the test with what to run; nothing is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("capture_runner.py")
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


def start_capture(job: dict, workdir: Path) -> subprocess.Popen:
    """Start ``capture_runner.py`` on ``job`` in a child process."""
    job_path = workdir / f"job-{uuid.uuid4().hex[:6]}.json"
    job_path.write_text(json.dumps(job))
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(job_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
    )


def run_capture(job: dict, workdir: Path, timeout: float = 240) -> tuple[int, dict | None, str]:
    """Run a capture to its end; return (exit code, summary or None, stderr)."""
    process = start_capture(job, workdir)
    out, err = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return process.returncode, (json.loads(lines[-1]) if process.returncode == 0 and lines else None), err
