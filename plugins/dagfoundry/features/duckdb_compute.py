"""Run the feature job on the embedded engine (DuckDB, in the task's process).

The query is the job file's (:func:`dagfoundry.features.feature_sql.feature_query`),
transpiled to DuckDB;
the output layout is the Spark application's (``<output>/feature_date=YYYY-MM-DD/part-*.parquet``
plus ``<output>/_empty``), so :func:`dagfoundry.features.compute.publish_feature_job`
verifies and publishes either engine's output the same way.

Memory is bounded by DuckDB's ``memory_limit`` with spilling to ``temp_directory``
(:class:`~dagfoundry.lake.duckdb_engine.DuckDBSettings`, from the spec's ``duckdb:`` block).
duckdb is imported inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.features.feature_sql import q, value_sql
from dagfoundry.lake.dialects import for_engine
from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_literal

if TYPE_CHECKING:
    import duckdb


def register_sources(conn: duckdb.DuckDBPyConnection, definition: Mapping[str, Any]) -> None:
    """Create a view ``src_<name>`` over each source's Parquet files (Hive partitions as columns)."""
    for source in definition["sources"]:
        path = Path(source["path"])
        pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
        conn.execute(
            f"CREATE OR REPLACE VIEW src_{source['name']} AS SELECT * FROM "
            f"read_parquet({sql_literal(pattern)}, hive_partitioning = true, union_by_name = true)"
        )


def value_types(conn: duckdb.DuckDBPyConnection, definition: Mapping[str, Any]) -> dict[str, str]:
    """Return, per window feature, the SQL type of the value it aggregates (read from the sources' schemas)."""
    default_source = definition["sources"][0]["name"]
    found: dict[str, str] = {}
    for feature in definition["features"]:
        if feature["kind"] != "window" or feature["function"] == "count_distinct":
            continue
        source = feature.get("source") or default_source
        select = for_engine(f"SELECT {value_sql(feature)} AS {q('v')} FROM src_{source}", "duckdb")
        described = conn.execute(f"DESCRIBE {select}").fetchall()
        duck_type = str(described[0][1]).upper()
        found[feature["name"]] = _spark_type(duck_type)
    return found


def _spark_type(duck_type: str) -> str:
    """Return the Spark SQL name of a DuckDB type (the query is written in Spark SQL)."""
    names = {"INTEGER": "INT", "BIGINT": "BIGINT", "SMALLINT": "SMALLINT", "TINYINT": "TINYINT",
             "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "HUGEINT": "BIGINT", "VARCHAR": "STRING"}
    if duck_type.startswith("DECIMAL"):
        return duck_type
    return names.get(duck_type, duck_type)


def run_duckdb_job(job_file: str | Path, settings: DuckDBSettings | None = None) -> dict[str, Any]:
    """Run a prepared feature job (its ``job.json``) with DuckDB and write its staged output.

    :return: ``{"engine": "duckdb", "rows": n, "seconds": s}``
    """
    import json

    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    output = Path(job["output"])
    started = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    conn = connect(settings or DuckDBSettings(), output.parent)
    try:
        register_sources(conn, job["definition"])
        conn.execute(f"CREATE TEMP TABLE features AS {for_engine(job['query'], 'duckdb')}")
        rows = conn.execute("SELECT count(*) FROM features").fetchone()[0]  # type: ignore[index]
        if rows:
            conn.execute(
                f"COPY features TO {sql_literal(output)} (FORMAT parquet, PARTITION_BY (feature_date), "
                "FILENAME_PATTERN 'part-{i}', OVERWRITE_OR_IGNORE true)"
            )
        empty = output / "_empty"
        empty.mkdir(exist_ok=True)
        conn.execute(
            f"COPY (SELECT * EXCLUDE (feature_date) FROM features LIMIT 0) TO {sql_literal(empty / 'part-0.parquet')} "
            "(FORMAT parquet)"
        )
    finally:
        conn.close()
    return {"engine": "duckdb", "rows": int(rows), "seconds": round(time.perf_counter() - started, 3)}


