"""Rewrite a compaction batch on the embedded engine (DuckDB, in the task's process).

The job is the batch file (``dagfoundry.compaction.journal.stage_plan``): per partition the
planned input files, a staging directory and a target file count; for the batch the sort
columns, format and compression. Spark executes it with ``include/spark/compaction_rewrite.py``;
this module executes the same batch with DuckDB and writes the same result file, so the
``publish`` step verifies (with DuckDB, reading both sides back from disk) and publishes
either engine's output the same way. The plan, the verification and the publication are the
job's logic and exist once; what differs per engine is only how files are read and written.

For each partition: read exactly the planned files (their schemas merged by name), stream the
rows (in sort-column order when the spec has sort columns) into ``target_files`` files of
equal row counts: ``part-NNNNN.parquet`` files with the spec's compression and
the input's schema (pyarrow's writer). Parquet
only (DuckDB writes no ORC: an ORC table compacts with ``engine: spark``); files with legacy
INT96 timestamps are refused (DuckDB would write them back as TIMESTAMP_MICROS, which Spark
reads as another type). A partition that fails is recorded with its error and the others
continue. duckdb and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from dagfoundry.errors import DagfoundryError
from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_literal

#: pyarrow's names for the spec's compression codecs.
_CODECS = {"snappy": "snappy", "zstd": "zstd", "gzip": "gzip", "lz4": "lz4", "none": "none", "uncompressed": "none"}
#: Rows per record batch streamed from DuckDB to the file writer.
_BATCH_ROWS = 65_536


class UnsupportedByEngineError(DagfoundryError):
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
    schema, rows = _input_schema_and_rows(files)
    read = time.monotonic()
    conn = connect(settings, work)
    try:
        listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
        ordered = f" ORDER BY {order}" if order else ""
        query = f"SELECT * FROM read_parquet({listed}, union_by_name = true, hive_partitioning = false){ordered}"
        stream = conn.sql(query).to_arrow_reader(_BATCH_ROWS)
        _write_files(stream, schema, staging, target, math.ceil(rows / target) if rows else 0, codec)
    finally:
        conn.close()
    return {
        "timings": {"read_schema": read - started, "write": time.monotonic() - read},
        "files": sorted(({"name": p.name, "size": p.stat().st_size} for p in staging.iterdir()), key=lambda f: f["name"]),
    }


def _input_schema_and_rows(files: list[str]) -> tuple[Any, int]:
    """Return the input files' schema merged by name as their footers declare it (nullability
    included), and their row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    footers = [pq.read_metadata(path) for path in files]
    schema = pa.unify_schemas([f.schema.to_arrow_schema().remove_metadata() for f in footers])
    return schema, sum(f.num_rows for f in footers)


def _write_files(stream: Any, schema: Any, staging: Path, target: int, per_file: int, codec: str) -> None:
    """Cut the streamed rows into ``target`` files of ``per_file`` rows (the last one shorter).

    pyarrow writes, not DuckDB's COPY: DuckDB marks a column without nulls REQUIRED, which would
    change the table's schema for every reader (a column the input declares optional stays so).
    """
    import pyarrow.parquet as pq

    index, written, writer = 0, 0, None
    try:
        for batch in stream:
            batch = batch.cast(schema) if batch.schema != schema else batch
            offset = 0
            while offset < batch.num_rows:
                if writer is None or (written >= per_file and index < target):
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(staging / f"part-{index:05d}.parquet", schema, compression=codec)
                    index, written = index + 1, 0
                take = batch.num_rows - offset if index == target else min(per_file - written, batch.num_rows - offset)
                writer.write_batch(batch.slice(offset, take))
                offset, written = offset + take, written + take
        if writer is None:  # no rows: one empty file keeps the partition's schema
            writer = pq.ParquetWriter(staging / "part-00000.parquet", schema, compression=codec)
    finally:
        if writer is not None:
            writer.close()


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
