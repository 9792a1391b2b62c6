"""Which engine runs a kind's lake job, and the embedded engine's bounds.

``engine: duckdb`` (the default) runs the job in the task's own process on DuckDB, bounded by
the ``duckdb:`` block; ``engine: spark`` submits the same job, generated for Spark, through
the provider's ``SparkSubmitOperator`` with the ``spark:`` block (local mode or a cluster,
as the Spark connection says). One definition of each job serves both (docs/decisions.md),
so switching is configuration: a spec's key, or one line in a ``defaults.yaml``
(``kinds: {feature_backfill: {engine: spark}}``), or an environment variable there
(``engine: ${DAGFOUNDRY_LAKE_ENGINE:-duckdb}``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from dagfoundry.specs.base import StrictModel

#: The engines a lake job runs on.
Engine = Literal["duckdb", "spark"]

_DUCKDB_MEMORY = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")


def _duckdb_memory(value: str) -> str:
    if not _DUCKDB_MEMORY.match(value):
        raise ValueError(f"{value!r} is not a DuckDB memory size: write a number and a unit, e.g. '512MB', '4GB'")
    return value


#: A memory size as DuckDB's ``memory_limit`` takes it (``512MB``, ``4GB``).
DuckDBMemory = Annotated[
    str, AfterValidator(_duckdb_memory), WithJsonSchema({"type": "string", "pattern": _DUCKDB_MEMORY.pattern})
]


class DuckDBSpec(StrictModel):
    """Bounds of a job on the embedded engine (DuckDB in the task's process)."""

    memory_limit: DuckDBMemory = Field(
        default="2GB", description="DuckDB's memory_limit; beyond it, operators spill to temp_directory."
    )
    threads: int | None = Field(default=None, ge=1, le=256, description="Worker threads; null: one per core.")
    temp_directory: str | None = Field(
        default=None, min_length=1, description="Where spilled data goes; null: a folder in the job's staging."
    )

    def settings(self) -> dict[str, object]:
        """Return the bounds as the JSON-safe dict the engine runners take."""
        return {"memory_limit": self.memory_limit, "threads": self.threads, "temp_directory": self.temp_directory}


ENGINE_DESCRIPTION = "duckdb (embedded, in the task) or spark (spark-submit with the spark block)."
