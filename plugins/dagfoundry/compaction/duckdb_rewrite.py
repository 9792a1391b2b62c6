"""Rewrite a compaction batch on the embedded engine (DuckDB, in the task's process).

The job is the batch file (``dagfoundry.compaction.journal.stage_plan``): per partition the
planned input files, a staging directory and a target file count; for the batch the sort
columns, format and compression. Spark executes it with ``include/spark/compaction_rewrite.py``;
this module executes the same batch with DuckDB and writes the same result file, so the
``publish`` step verifies (with DuckDB, reading both sides back from disk) and publishes
either engine's output the same way. The plan, the verification and the publication are the
job's logic and exist once; what differs per engine is only how files are read and written.

For each partition: read exactly the planned files (their schemas merged by name) and write
them under the staging directory as ``part-NNNNN.parquet`` files with the spec's compression,
in one of two ways:

- **DuckDB's COPY** (unsorted output, or sorted output into one file): files of about the
  spec's ``target_file_size`` (a new file starts after the row group that crosses it, so a
  partition of fewer row groups has fewer files), DuckDB reading and writing on every core.
  COPY marks a column REQUIRED when the optimizer's statistics say it holds no NULL (the
  input's footers say so of any null-free column), which would change the table's schema for
  every reader: the batch's connection runs with statistics propagation off, and the written
  schema is compared with the input's afterwards (names, types, nullability). Where they
  differ (a type DuckDB stores otherwise), the partition is written again the second way.
- **pyarrow's writer** fed by a stream of DuckDB's rows (sorted output into several files, and
  the fallback above): ``target_files`` files of equal row counts with the input's schema
  exactly. It costs about twice the CPU of COPY (pyarrow encodes on one core per file).

Several partitions are rewritten at once, each on a cursor of one connection (one memory
limit). Parquet only (DuckDB writes no ORC: an ORC table compacts with ``engine: spark``);
files with legacy INT96 timestamps are refused (DuckDB would write them back as
TIMESTAMP_MICROS, which Spark reads as another type). A partition that fails is recorded with
its error and the others continue. duckdb and pyarrow are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from dagfoundry.errors import DagfoundryError
from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_identifier, sql_literal
from dagfoundry.lake.job_files import write_cut_files, write_result

log = logging.getLogger(__name__)

#: pyarrow's names for the spec's compression codecs.
_CODECS = {"snappy": "snappy", "zstd": "zstd", "gzip": "gzip", "lz4": "lz4", "none": "none", "uncompressed": "none"}
#: DuckDB's names for them (pyarrow's ``lz4`` is the Parquet codec LZ4_RAW).
_COPY_CODECS = {"snappy": "snappy", "zstd": "zstd", "gzip": "gzip", "lz4": "lz4_raw", "none": "uncompressed"}
#: Rows per record batch streamed from DuckDB to pyarrow's writer (each becomes a row group).
_BATCH_ROWS = 65_536
#: Partitions of a batch rewritten at once (bounded further by the job's threads and the cores).
_MAX_PARTITIONS_AT_ONCE = 4


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
    settings = settings or DuckDBSettings()
    work = Path(batch["result_path"]).parent
    partitions = batch["partitions"]
    conn = connect(settings, work)
    # A global setting (not per cursor), so set once for every partition's COPY: with the
    # statistics propagated, COPY marks each column the footers call null-free REQUIRED.
    conn.execute("SET disabled_optimizers = 'statistics_propagation'")
    try:
        workers = max(1, min(len(partitions), settings.threads or os.cpu_count() or 1, _MAX_PARTITIONS_AT_ONCE))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(partial(_rewrite_safely, batch, conn), partitions))
    finally:
        conn.close()
    result = {"version": batch["version"], "partitions": results}
    write_result(batch["result_path"], result)
    return result


def _rewrite_safely(batch: dict, conn: Any, partition: dict) -> dict:
    started = time.monotonic()
    cursor = conn.cursor()
    try:
        figures = rewrite_partition(batch, partition, cursor)
        return {"key": partition["key"], "ok": True, "seconds": time.monotonic() - started, **figures}
    except Exception as exc:  # noqa: BLE001 - one partition's failure must not hide the others
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        return {"key": partition["key"], "ok": False, "error": message, "seconds": time.monotonic() - started}
    finally:
        cursor.close()


def rewrite_partition(batch: dict, partition: dict, conn: Any) -> dict:
    """Write one partition's planned files under its staging directory.

    :param conn: a cursor of :func:`rewrite_batch`'s connection (statistics propagation off)
    :return: the staged files, the writer used and timings
    """
    files = list(partition["input_files"])
    started = time.monotonic()
    schema, rows = _input_schema_and_rows(files)
    staging = Path(partition["staging_dir"])
    _empty(staging)
    target = max(1, int(partition["target_files"]))
    order = ", ".join(sql_identifier(c) for c in batch["sort_columns"])
    listed = "[" + ", ".join(sql_literal(f) for f in files) + "]"
    query = (f"SELECT * FROM read_parquet({listed}, union_by_name = true, hive_partitioning = false)"
             + (f" ORDER BY {order}" if order else ""))
    codec = _CODECS[batch["compression"]]
    read = time.monotonic()
    writer = "pyarrow"
    if not order or target == 1:
        # COPY splits by size and, in DuckDB 2.0, loses the ORDER BY across the files it rotates.
        file_bytes = None if target == 1 else int(batch.get("target_file_bytes") or _input_bytes(files) / target)
        changed = _copy_files(conn, query, staging, file_bytes, _COPY_CODECS[codec], schema)
        if changed is None:
            writer = "duckdb copy"
        else:
            log.info("%s: DuckDB's COPY would change %s; writing with pyarrow instead", partition["key"], changed)
            _empty(staging)
    if writer == "pyarrow":
        stream = conn.sql(query).to_arrow_reader(_BATCH_ROWS)
        write_cut_files(stream, schema, staging, target, math.ceil(rows / target) if rows else 0, codec)
    return {
        "writer": writer,
        "timings": {"read_schema": read - started, "write": time.monotonic() - read},
        "files": sorted(({"name": p.name, "size": p.stat().st_size} for p in staging.iterdir()), key=lambda f: f["name"]),
    }


def _copy_files(conn: Any, query: str, staging: Path, file_bytes: int | None, codec: str, schema: Any) -> str | None:
    """Write the query's rows with DuckDB's COPY into ``part-NNNNN.parquet`` files of about
    ``file_bytes`` (one file when None); return how their schema differs from ``schema``, or None."""
    import pyarrow.parquet as pq

    options = f"FORMAT parquet, COMPRESSION {codec}"
    if file_bytes is None:
        conn.execute(f"COPY ({query}) TO {sql_literal(staging / 'part-00000.parquet')} ({options})")
    else:
        conn.execute(f"COPY ({query}) TO {sql_literal(staging)} ({options}, FILE_SIZE_BYTES {file_bytes}, "
                     "FILENAME_PATTERN 'part-{i}', PER_THREAD_OUTPUT false, OVERWRITE_OR_IGNORE true)")
        for path in staging.glob("part-*.parquet"):
            path.rename(staging / f"part-{int(path.stem.split('-')[1]):05d}.parquet")
    written = [pq.read_schema(path).remove_metadata() for path in sorted(staging.iterdir())]
    changes = sorted({
        f"{field.name} {field.type}{'' if field.nullable else ' not null'} -> {other.type}{'' if other.nullable else ' not null'}"
        for found in written
        for field, other in zip(schema, found)
        if not field.equals(other)
    } | ({"the column names or their order"} if any(found.names != schema.names for found in written) else set()))
    return ", ".join(changes) or None


def _empty(staging: Path) -> None:
    """Create the staging directory, or empty it (a retried rewrite starts over)."""
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.iterdir():
        leftover.unlink()


def _input_bytes(files: list[str]) -> int:
    return sum(os.path.getsize(path) for path in files)


def _input_schema_and_rows(files: list[str]) -> tuple[Any, int]:
    """Return the input files' schema merged by name as their footers declare it (nullability
    included), and their row count, reading each footer once.

    :raises UnsupportedByEngineError: a file stores legacy INT96 timestamps
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas, rows = [], 0
    for path in files:
        footer = pq.read_metadata(path)
        parquet_schema = footer.schema
        legacy = [parquet_schema.column(i).name for i in range(len(parquet_schema))
                  if parquet_schema.column(i).physical_type == "INT96"]
        if legacy:
            raise UnsupportedByEngineError(
                f"{path} stores {', '.join(legacy)} as legacy INT96 timestamps, which the embedded engine cannot "
                "write back unchanged: compact this table with engine: spark"
            )
        schemas.append(parquet_schema.to_arrow_schema().remove_metadata())
        rows += footer.num_rows
    return pa.unify_schemas(schemas), rows
