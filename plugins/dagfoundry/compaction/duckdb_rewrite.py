"""Rewrite a compaction batch on the embedded engine (DuckDB, in the task's process).

The job is the batch file (``dagfoundry.compaction.journal.stage_plan``): per partition the
planned input files, a staging directory and a target file count; for the batch the sort
columns, format and compression. Spark executes it with ``include/spark/compaction_rewrite.py``;
this module executes the same batch with DuckDB and writes the same result file, so the
``publish`` step verifies (with DuckDB, reading both sides back from disk) and publishes
either engine's output the same way. The plan, the verification and the publication are the
job's logic and exist once; what differs per engine is only how files are read and written.

For each partition: read exactly the planned files (their schemas merged by name), lay the
rows out in ``target_files`` files of equal row counts (in sort-column order when the spec
has sort columns), stream them to ``part-NNNNN.parquet`` files with the spec's compression and
the input's schema (pyarrow's writer). Parquet
only (DuckDB writes no ORC: an ORC table compacts with ``engine: spark``); files with legacy
INT96 timestamps are refused (DuckDB would write them back as TIMESTAMP_MICROS, which Spark
reads as another type). A partition that fails is recorded with its error and the others
continue. duckdb and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_literal

#: pyarrow's names for the spec's compression codecs.
_CODECS = {"snappy": "snappy", "zstd": "zstd", "gzip": "gzip", "lz4": "lz4", "none": "none", "uncompressed": "none"}
#: Rows per record batch streamed from DuckDB to the file writer.
_BATCH_ROWS = 65_536


class UnsupportedByEngineError(Exception):
    """The embedded engine cannot rewrite these files without changing them; Spark can."""


def rewrite_batch(batch_file: str | Path, settings: DuckDBSettings | None = None) -> dict[str, Any]:
    """Rewrite every partition of one batch and write its result file.

    :return: the result (``{"version", "partitions": [{"key", "ok", ...}]}``)
    """
    batch = json.loads(Path(batch_file).read_text(encoding="utf-8"))
    if batch["output_format"] != "parquet":
        raise UnsupportedByEngineError(
            f"compaction batch {batch_file}: the embedded engine writes Parquet only, this table is "
            f"{batch['output_format']}: set engine: spark for it"
        )
    work = Path(batch["result_path"]).parent
    results = [_rewrite_safely(batch, partition, settings or DuckDBSettings(), work) for partition in batch["partitions"]]
    result = {"version": batch["version"], "partitions": results}
    _write_result(batch["result_path"], result)
    return result


def _rewrite_safely(batch: dict, partition: dict, settings: DuckDBSettings, work: Path) -> dict:
    started = time.monotonic()
    try:
        figures = rewrite_partition(batch, partition, settings, work)
        return {"key": partition["key"], "ok": True, "seconds": time.monotonic() - started, **figures}
    except Exception as exc:  # noqa: BLE001 - one partition's failure must not hide the others
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        return {"key": partition["key"], "ok": False, "error": message, "seconds": time.monotonic() - started}


def rewrite_partition(batch: dict, partition: dict, settings: DuckDBSettings, work: Path) -> dict:
    """Write one partition's planned files as ``target_files`` files under its staging directory."""
    files = list(partition["input_files"])
    started = time.monotonic()
    _refuse_int96(files)
    staging = Path(partition["staging_dir"])
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.iterdir():  # a retried rewrite starts over
        leftover.unlink()
    target = max(1, int(partition["target_files"]))
    order = ", ".join(_quote(c) for c in batch["sort_columns"])
    codec = _CODECS[batch["compression"]]
    conn = connect(settings, work)
    try:
        listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
        rows_expr = f"ntile({target}) OVER ({'ORDER BY ' + order if order else ''})"
        conn.execute(
            f"CREATE TEMP TABLE rows AS SELECT *, {rows_expr} AS _df_file "
            f"FROM read_parquet({listed}, union_by_name = true, hive_partitioning = false)"
        )
        read = time.monotonic()
        schema = _input_schema(files)
        for index in range(1, target + 1):
            ordered = f" ORDER BY {order}" if order else ""
            reader = conn.execute(f"SELECT * EXCLUDE (_df_file) FROM rows WHERE _df_file = {index}{ordered}")
            _write_file(reader.to_arrow_reader(_BATCH_ROWS), schema, staging / f"part-{index - 1:05d}.parquet", codec)
    finally:
        conn.close()
    return {
        "timings": {"read_schema": read - started, "write": time.monotonic() - read},
        "files": sorted(({"name": p.name, "size": p.stat().st_size} for p in staging.iterdir()), key=lambda f: f["name"]),
    }


def _input_schema(files: list[str]) -> Any:
    """Return the input files' schema merged by name, as their footers declare it (nullability included)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.unify_schemas([pq.read_schema(path).remove_metadata() for path in files])


def _write_file(batches: Any, schema: Any, path: Path, codec: str) -> None:
    """Write the record batches to ``path`` with the input's schema.

    pyarrow writes, not DuckDB's COPY: DuckDB marks a column without nulls REQUIRED, which would
    change the table's schema for every reader (a column the input declares optional stays so).
    """
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, schema, compression=codec) as writer:
        for batch in batches:
            writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)


def _refuse_int96(files: list[str]) -> None:
    import pyarrow.parquet as pq

    for path in files:
        schema = pq.read_metadata(path).schema
        legacy = [schema.column(i).name for i in range(len(schema)) if schema.column(i).physical_type == "INT96"]
        if legacy:
            raise UnsupportedByEngineError(
                f"{path} stores {', '.join(legacy)} as legacy INT96 timestamps, which the embedded engine cannot "
                "write back unchanged: compact this table with engine: spark"
            )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _write_result(path: str, result: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
