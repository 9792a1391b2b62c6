"""The embedded engine: an in-memory DuckDB bounded by a job's memory limit, threads and spill folder.

Every lake job that runs on ``engine: duckdb`` opens its connection here, with the bounds of
the spec's ``duckdb:`` block (:class:`dagfoundry.specs.engine.DuckDBSpec`). duckdb is
imported inside :func:`connect`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class DuckDBSettings:
    """Resource bounds of one embedded job.

    :param memory_limit: DuckDB's ``memory_limit`` (``"2GB"``); beyond it operators spill
    :param threads: worker threads; None lets DuckDB use every core
    :param temp_directory: where spilled data goes; None uses DuckDB's default next to the job
    """

    memory_limit: str = "2GB"
    threads: int | None = None
    temp_directory: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DuckDBSettings:
        data = dict(data or {})
        return cls(**{k: data[k] for k in ("memory_limit", "threads", "temp_directory") if k in data})


def connect(settings: DuckDBSettings, work: Path) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB bounded by ``settings``, spilling under ``work`` by default.

    Without the ICU extension (not bundled, and nothing is downloaded) DuckDB has no time
    zones: a ``TIMESTAMP WITH TIME ZONE`` casts to its UTC wall time, as Spark's UTC session does.
    """
    import duckdb

    conn = duckdb.connect()
    conn.execute(f"SET memory_limit = '{settings.memory_limit}'")
    if settings.threads:
        conn.execute(f"SET threads = {int(settings.threads)}")
    conn.execute(f"SET temp_directory = {sql_literal(settings.temp_directory or work / '_spill')}")
    conn.execute("SET preserve_insertion_order = false")
    return conn


def sql_literal(value: str | Path) -> str:
    """Return ``value`` as a single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """Return ``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
