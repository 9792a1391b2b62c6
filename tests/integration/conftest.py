"""Fixtures shared by integration tests that run DAGs through Airflow itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the test Airflow home's SQLite metadata database once (``dag.test()`` needs it)."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stderr[-3000:]}"
    return os.environ["AIRFLOW_HOME"]
