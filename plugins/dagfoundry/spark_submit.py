"""Submit the project's Spark applications (``include/spark/*.py``).

Operators use the apache-spark provider's ``SparkSubmitOperator`` with
:func:`application_path`; code that runs a Spark job outside an operator (the demo data
generator, benchmarks, tests) uses :func:`submit_spark_app`, which goes through the same
provider hook, so every path is the one production takes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagfoundry.specs.spark import SparkSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPARK_APPS = PROJECT_ROOT / "include" / "spark"

#: Spark's logging for the project's applications: warnings and the application's milestones.
SPARK_LOG_CONFIG = SPARK_APPS / "log4j2.properties"

#: Spark settings every job gets unless the spec overrides them: no UI port (several jobs
#: run at once on one machine), UTC session time, deterministic Parquet output, and a
#: driver log short enough to read in the task log.
DEFAULT_SPARK_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{SPARK_LOG_CONFIG}",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.shuffle.partitions": "8",
}


def submit_options(spark: SparkSpec) -> dict[str, Any]:
    """Return the ``SparkSubmitOperator`` arguments a spec's ``spark:`` block sets (the same for every kind)."""
    return {
        "conn_id": spark.conn_id,
        "conf": {**DEFAULT_SPARK_CONF, **spark.conf},
        "driver_memory": spark.driver_memory,
        "executor_memory": spark.executor_memory,
    }


def application_path(app: str) -> str:
    """Return the absolute path of the Spark application ``include/spark/<app>.py``."""
    path = SPARK_APPS / f"{app}.py"
    if not path.is_file():
        raise FileNotFoundError(f"Spark application {app!r} not found at {path}")
    return str(path)


def spark_environment() -> dict[str, str]:
    """Return environment variables a ``spark-submit`` child needs on this machine.

    The venv's ``bin/`` holds pyspark's ``spark-submit``; the driver must use the venv's
    Python so the same pyarrow and pandas are there.
    """
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {
        "PATH": path if venv_bin in path.split(os.pathsep) else f"{venv_bin}{os.pathsep}{path}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def submit_spark_app(
    app: str,
    args: Sequence[str],
    *,
    conn_id: str = "spark_local",
    conf: Mapping[str, str] | None = None,
    driver_memory: str | None = None,
    executor_memory: str | None = None,
) -> None:
    """Run ``include/spark/<app>.py`` through the provider's ``SparkSubmitHook`` and wait.

    :param app: application name without ``.py``
    :param args: application arguments
    :param conn_id: Airflow connection of type ``spark`` (``local[*]`` by default in tests)
    :param conf: Spark settings on top of :data:`DEFAULT_SPARK_CONF`
    :param driver_memory: e.g. ``"2g"``
    :param executor_memory: executors' memory on a cluster (None: the connection's default)
    :raises AirflowException: when the job fails (the hook's message carries the exit code)
    """
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    os.environ.update(spark_environment())
    hook = SparkSubmitHook(
        conf={**DEFAULT_SPARK_CONF, **(conf or {})},
        conn_id=conn_id,
        name=f"dagfoundry-{app}",
        application_args=list(args),
        driver_memory=driver_memory,
        executor_memory=executor_memory,
        env_vars=spark_environment(),
    )
    hook.submit(application_path(app))
