"""Run a mirror plan on the embedded engine (DuckDB, in the task's process).

The plan's query per table (:mod:`dagfoundry.cdc.mirror_sql`, Spark SQL) is transpiled to
DuckDB and run over views this module registers on the plan's inputs; the output is what
``include/spark/cdc_mirror.py`` writes: ``files`` Parquet files per table under its staging
directory, rows sorted by key, and the plan's result file (row counts), so
:func:`dagfoundry.cdc.mirror.publish_mirror_plan` verifies and publishes either engine's
output the same way. The same key checks fail the run (unique, non-null keys).

The files are written by pyarrow with the plan's output schema, not by DuckDB's ``COPY``:
COPY marks a column without nulls REQUIRED and writes its own logical types, while the
mirror keeps Spark's schema (every column nullable, microsecond timestamps) whichever engine
wrote it. Memory is bounded by :class:`~dagfoundry.lake.duckdb_engine.DuckDBSettings`
(sorts and windows spill to its temp directory). duckdb and pyarrow are imported inside the
functions.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.cdc.mirror import FAILPOINT_ENV, RESULT_ENGINE_KEY, MirrorError
from dagfoundry.cdc.mirror_sql import output_schema, parquet_files
from dagfoundry.lake import failpoints
from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_identifier, sql_literal
from dagfoundry.lake.job_files import write_cut_files, write_result

if TYPE_CHECKING:
    import duckdb

#: rows per record batch streamed from DuckDB to the file writer
_BATCH_ROWS = 65_536


def run_duckdb_mirror(plan_path: str | Path, settings: DuckDBSettings | None = None) -> dict[str, Any]:
    """Build every planned table's new mirror in staging and write the plan's result file.

    :return: the result (``{table_id: {"row_count", "seconds"}, "_engine": "duckdb"}``)
    :raises MirrorError: when a table's keys are not unique or not all set after applying its batches
    """
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    results: dict[str, Any] = {RESULT_ENGINE_KEY: "duckdb"}
    for table in plan["tables"]:
        started = time.monotonic()
        rows = build_mirror(table, settings or DuckDBSettings(), Path(plan["result_path"]).parent)
        results[table["table_id"]] = {"row_count": rows, "seconds": round(time.monotonic() - started, 3)}
        failpoints.reach(FAILPOINT_ENV, "after_stage", table["table_id"])
    write_result(plan["result_path"], results)
    return results


def build_mirror(table: dict, settings: DuckDBSettings, work: Path) -> int:
    """Run one table's query, check its keys, write its staged files; return its row count.

    :param work: where DuckDB spills by default (``work/_spill``: beside the plan, not among
        the table's staged versions)
    """
    from dagfoundry.lake.dialects import for_engine

    staging = Path(table["staging_path"])
    if staging.exists():  # a retried run of the same plan starts the table over
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    conn = connect(settings, work)
    try:
        register_views(conn, table["views"])
        conn.execute(f"CREATE TEMP TABLE mirror AS {for_engine(table['sql'], 'duckdb')}")
        rows = _check_keys(conn, table)
        order = ", ".join(sql_identifier(k) for k in table["key_columns"])
        stream = conn.sql(f"SELECT * FROM mirror ORDER BY {order}").to_arrow_reader(_BATCH_ROWS)
        files = int(table.get("files", 1))
        # Each file sorted by key, as Spark's repartition(files).sortWithinPartitions(keys) leaves them.
        write_cut_files(stream, output_schema(table), staging, files, math.ceil(rows / files) if rows else 0)
    finally:
        conn.close()
    return rows


def register_views(conn: duckdb.DuckDBPyConnection, views: dict[str, list[str]]) -> None:
    """Create each view the query reads over the Parquet files of its directories."""
    for name, directories in views.items():
        files = [f for d in directories for f in parquet_files(d)]
        listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
        conn.execute(f"CREATE OR REPLACE VIEW {sql_identifier(name)} AS SELECT * FROM read_parquet({listed}, hive_partitioning = false)")


def _check_keys(conn: duckdb.DuckDBPyConnection, table: dict) -> int:
    """Return the mirror's row count after checking its keys are unique and set (as the Spark job does)."""
    keys = [sql_identifier(k) for k in table["key_columns"]]
    ((rows, distinct),) = conn.execute(
        f"SELECT (SELECT count(*) FROM mirror), (SELECT count(*) FROM (SELECT DISTINCT {', '.join(keys)} FROM mirror))"
    ).fetchall()
    if rows != distinct:
        raise MirrorError(f"table {table['table_id']}: {rows} rows but {distinct} distinct keys after applying batches")
    ((null_keys,),) = conn.execute(f"SELECT count(*) FROM mirror WHERE {' OR '.join(f'{k} IS NULL' for k in keys)}").fetchall()
    if null_keys:
        raise MirrorError(f"table {table['table_id']}: {null_keys} mirror rows have a null key column")
    return int(rows)
