"""Lakes of small Parquet files for the compaction integration tests, written by pyarrow.

A module of its own (not conftest.py): several conftest modules exist, and
``from conftest import`` would bind whichever pytest imported last.
"""

from __future__ import annotations

import os
import random
from pathlib import Path


def write_small_files(directory: Path, *, files: int, rows: int, first_id: int, seed: int) -> int:
    """Write ``files`` Parquet files of ``rows`` rows with ids from ``first_id``; return the next id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    next_id = first_id
    for index in range(files):
        ids = list(range(next_id, next_id + rows))
        rng.shuffle(ids)
        table = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "amount": pa.array([rng.random() * 100 for _ in ids], pa.float64()),
                "label": pa.array([None if i % 11 == 0 else f"label-{i % 97}" for i in ids], pa.string()),
            }
        )
        pq.write_table(table, directory / f"part-{seed:04d}-{index:05d}.parquet")
        next_id += rows
    return next_id


def age_tree(directory: Path, seconds: float) -> None:
    """Set the mtime of a directory tree ``seconds`` in the past (a closed partition)."""
    when = os.path.getmtime(directory) - seconds
    for path in [directory, *directory.rglob("*")]:
        os.utime(path, (when, when))


def partition_rows(directory: Path) -> list[tuple]:
    """Return every row of a partition directory, sorted (hidden files ignored, as readers do)."""
    import pyarrow.parquet as pq

    rows: list[tuple] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(("_", ".")):
            continue
        table = pq.read_table(directory / name)
        rows.extend(zip(*(table.column(c).to_pylist() for c in ("id", "amount", "label"))))
    return sorted(rows, key=lambda r: r[0])


def data_files(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith(("_", ".")))
