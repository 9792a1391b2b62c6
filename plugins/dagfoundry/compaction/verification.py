"""Prove that a rewrite kept a partition's content, by reading both sides from disk with DuckDB.

For the planned input files and for the staged output files, DuckDB computes

- the columns and their types as readers see them (names mapped to DuckDB types, so an
  ``INT96`` timestamp that became ``TIMESTAMP_MICROS`` or an unsigned integer that Spark
  widened shows up as a change, which a Spark-only comparison would miss);
- the row count;
- a checksum: the exact sum (128-bit) of DuckDB's 64-bit ``hash`` of each row over every
  column, in one order of names for both sides. ``hash(a, b, ...)`` combines its arguments
  by position and hashes NULL to a value of its own, so ``(NULL, 1)`` and ``(1, NULL)``
  differ. A sum does not depend on row order or on how rows are split across files; with
  the row count it detects lost, duplicated and altered rows (unlike XOR, a sum does not
  cancel a row that appears twice).

DuckDB is a second, independent Parquet reader: a Spark reader or writer bug cannot hide
in a check done by the same code. Parquet is read by DuckDB itself (columns missing in
some input files read as NULL, as Spark's ``mergeSchema`` does); ORC through pyarrow's
reader, scanned by DuckDB. Imports of duckdb and pyarrow happen inside the functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: DuckDB threads per verification, and its memory cap (an aggregate without groups
#: needs little; the Parquet reader holds about one row group per thread).
THREADS = max(1, min(4, os.cpu_count() or 1))
MEMORY_LIMIT = "2GB"


@dataclass(frozen=True)
class ContentFigures:
    """What one side of a rewrite holds: columns (name -> type), rows and row checksum."""

    columns: dict[str, str]
    rows: int | None = None
    checksum: str | None = None

    def describe(self) -> str:
        return f"rows={self.rows} checksum={self.checksum}"


@dataclass(frozen=True)
class RewriteVerification:
    """The figures of both sides and, when they do not prove equal content, why."""

    before: ContentFigures
    after: ContentFigures
    seconds: float
    problem: str | None

    def to_dict(self) -> dict:
        return {**asdict(self), "engine": f"duckdb {_duckdb_version()}"}


def verify_rewrite(old_files: Sequence[str], new_files: Sequence[str], file_format: str) -> RewriteVerification:
    """Compare the content of ``old_files`` and ``new_files`` (paths, one format).

    :param old_files: the planned input files
    :param new_files: the staged files the rewrite produced
    :param file_format: ``parquet`` or ``orc``
    :return: both figures; ``problem`` is None only when columns, types, row count and
        checksum are all equal
    """
    started = time.monotonic()
    sides = {"old": old_files, "new": new_files}
    figures = {side: ContentFigures({}) for side in sides}
    problem: str | None = None
    connection = _connect()
    side = "old"
    try:
        relations = {}
        for side, paths in sides.items():
            relations[side] = _relation(connection, paths, file_format, side)
            figures[side] = ContentFigures(_columns(connection, *relations[side]))
        problem = schema_difference(figures["old"].columns, figures["new"].columns)
        if problem is None:
            names = sorted(figures["old"].columns)
            for side in sides:
                figures[side] = _with_checksum(connection, figures[side], *relations[side], names)
            before, after = figures["old"], figures["new"]
            if (before.rows, before.checksum) != (after.rows, after.checksum):
                problem = f"content differs: old files {before.describe()}, new files {after.describe()}"
    except Exception as exc:  # noqa: BLE001 - whatever stops the reading, the content is not proven equal
        problem = f"cannot read the {side} files to verify them: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
    finally:
        connection.close()
    return RewriteVerification(figures["old"], figures["new"], time.monotonic() - started, problem)


def schema_difference(before: dict[str, str], after: dict[str, str]) -> str | None:
    """Return which columns were lost, gained or changed type, or None when none was."""
    changes = [f"{name} lost ({before[name]})" for name in before if name not in after]
    changes += [f"{name} added ({after[name]})" for name in after if name not in before]
    changes += [f"{name} {before[name]} -> {after[name]}" for name in before if name in after
                and before[name] != after[name]]
    return f"schema differs: {'; '.join(changes)}" if changes else None


def _connect() -> Any:
    import duckdb

    return duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY_LIMIT,
                                  "preserve_insertion_order": False})


def _duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


def _relation(connection: Any, paths: Sequence[str], file_format: str, side: str) -> tuple[str, list]:
    """Return SQL naming the rows of ``paths`` and its parameters (ORC: a view named after ``side``)."""
    if file_format == "parquet":
        return "read_parquet(?, union_by_name = true, hive_partitioning = false)", [list(paths)]
    if file_format == "orc":
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.orc as orc

        schema = pa.unify_schemas([orc.ORCFile(path).schema for path in paths])
        view = f"{side}_files"
        connection.register(view, ds.dataset(list(paths), format="orc", schema=schema))
        return view, []
    raise ValueError(f"cannot verify files of format {file_format!r}: expected parquet or orc")


def _columns(connection: Any, relation: str, parameters: list) -> dict[str, str]:
    described = connection.execute(f"DESCRIBE SELECT * FROM {relation}", parameters).fetchall()
    return {row[0]: row[1] for row in described}


def _with_checksum(connection: Any, figures: ContentFigures, relation: str, parameters: list,
                   names: list[str]) -> ContentFigures:
    row_hash = f"hash({', '.join(_quoted(name) for name in names)})"
    # sum() of UBIGINT hashes is already an exact HUGEINT; a cast of every row first costs more.
    sql = f"SELECT count(*), coalesce(sum({row_hash}), 0) FROM {relation}"
    ((rows, checksum),) = connection.execute(sql, parameters).fetchall()
    return ContentFigures(figures.columns, int(rows), str(checksum))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
