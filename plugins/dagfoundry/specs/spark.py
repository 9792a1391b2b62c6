"""The ``spark:`` block every kind that runs Spark takes: one shape, one way to submit.

Each kind's Spark job runs through the apache-spark provider's ``SparkSubmitOperator`` with
these settings (``dagfoundry.spark_submit.submit_options``). The top-level ``spark_conn_id``
of earlier versions is an error that says where the value moved.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator

from dagfoundry.specs.base import RuleViolation, StrictModel
from dagfoundry.specs.types import ConnId

_SPARK_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$")


def _spark_memory(value: str) -> str:
    if not _SPARK_MEMORY.match(value):
        raise ValueError(f"{value!r} is not a Spark memory size: use a number with k, m, g or t, e.g. '512m', '2g'")
    return value


#: A JVM memory size as Spark takes it (``512m``, ``2g``).
SparkMemory = Annotated[str, AfterValidator(_spark_memory), WithJsonSchema({"type": "string", "pattern": _SPARK_MEMORY.pattern})]


class SparkSpec(StrictModel):
    """How a kind's Spark application is submitted (the provider's ``SparkSubmitOperator``)."""

    conn_id: ConnId = Field(default="spark_local", description="Airflow Spark connection (master, deploy mode).")
    conf: dict[str, str] = Field(
        default_factory=dict, description="Spark settings (spark.*) on top of the project defaults."
    )
    driver_memory: SparkMemory = Field(default="1g", description="Driver memory of each application, e.g. '2g'.")
    executor_memory: SparkMemory | None = Field(
        default=None, description="Executor memory on a cluster; null keeps the connection's default."
    )

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, conf: dict[str, str]) -> dict[str, str]:
        for key in conf:
            if not key.startswith("spark."):
                raise ValueError(f"{key!r} is not a Spark setting: keys start with 'spark.'")
        return conf


def moved_spark_conn_id(data: Any) -> Any:
    """Reject the old top-level ``spark_conn_id`` at its line, saying where it went (a ``mode="before"`` check)."""
    if isinstance(data, dict) and "spark_conn_id" in data:
        value = data["spark_conn_id"]
        raise RuleViolation(
            ("spark_conn_id",), f"moved into the spark block: write `spark: {{conn_id: {value}}}` instead"
        )
    return data
