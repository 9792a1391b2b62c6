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


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Spark standalone master and worker from the installed pyspark, stopped after the session.

    Jobs reach it through the connection ``cluster.connection()`` returns (a ``spark://`` master).
    """
    from include.spark_standalone import SparkClusterError, SparkStandalone

    cluster = SparkStandalone(tmp_path_factory.mktemp("spark-standalone"), workers=1, cores=2, memory="1536m")
    try:
        cluster.start()
    except SparkClusterError as error:
        pytest.fail(f"the Spark standalone cluster did not start (Java 17 and pyspark are needed): {error}")
    yield cluster
    cluster.stop()
