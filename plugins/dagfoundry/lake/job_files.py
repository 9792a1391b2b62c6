"""What an embedded (DuckDB) lake job leaves for its publish step: staged files and a result file.

Both outputs mirror what the Spark applications write, so the publish step verifies either
engine's output the same way:

- :func:`write_cut_files` cuts a stream of Arrow record batches into ``part-NNNNN.parquet``
  files of a given row count, written by pyarrow with an exact schema (DuckDB's ``COPY`` marks
  a column without nulls REQUIRED and picks its own logical types, which would change what
  readers see);
- :func:`write_result` writes the job's result JSON atomically (temporary file, fsync,
  rename): the publish step never reads half a result.

pyarrow is imported inside the functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def write_cut_files(
    stream: Iterable[pa.RecordBatch], schema: pa.Schema, staging: Path, files: int, per_file: int, codec: str = "snappy"
) -> None:
    """Write the streamed rows, in order, into ``files`` files of ``per_file`` rows (the last takes the rest).

    Batches are cast to ``schema`` when they differ; no rows gives one empty file, so the
    output keeps its schema.
    """
    import pyarrow.parquet as pq

    index, written, writer = 0, 0, None
    try:
        for batch in stream:
            batch = batch.cast(schema) if batch.schema != schema else batch
            offset = 0
            while offset < batch.num_rows:
                if writer is None or (written >= per_file and index < files):
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(staging / f"part-{index:05d}.parquet", schema, compression=codec)
                    index, written = index + 1, 0
                take = batch.num_rows - offset if index == files else min(per_file - written, batch.num_rows - offset)
                writer.write_batch(batch.slice(offset, take))
                offset, written = offset + take, written + take
        if writer is None:
            writer = pq.ParquetWriter(staging / "part-00000.parquet", schema, compression=codec)
    finally:
        if writer is not None:
            writer.close()


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write a job's result JSON atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
