"""Content verification of a rewrite: DuckDB reads real Parquet and ORC files written here by pyarrow."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from dagfoundry.compaction.verification import schema_difference, verify_rewrite

ROWS = [(i, None if i % 7 == 0 else f"label-{i % 13}", i * 0.5) for i in range(300)]


def _table(rows: list[tuple]) -> pa.Table:
    ids, labels, amounts = zip(*rows) if rows else ((), (), ())
    return pa.table({"id": pa.array(ids, pa.int64()), "label": pa.array(labels, pa.string()),
                     "amount": pa.array(amounts, pa.float64())})


def _write(directory: Path, chunks: list[pa.Table], file_format: str = "parquet") -> list[str]:
    """Write one file per chunk under a Hive-style directory (DuckDB must not add its column)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, chunk in enumerate(chunks):
        path = directory / f"part-{index:04d}.{file_format}"
        if file_format == "orc":
            orc.write_table(chunk, path)
        else:
            pq.write_table(chunk, path)
        paths.append(str(path))
    return paths


def _split(rows: list[tuple], parts: int) -> list[pa.Table]:
    size = -(-len(rows) // parts)
    return [_table(rows[i:i + size]) for i in range(0, len(rows), size)]


@pytest.fixture
def old_files(tmp_path) -> list[str]:
    return _write(tmp_path / "live" / "dt=2024-01-01", _split(ROWS, 30))


def test_same_rows_in_other_files_and_order_verify(tmp_path, old_files):
    shuffled = ROWS[:]
    random.Random(1).shuffle(shuffled)
    new = _write(tmp_path / "staged" / "dt=2024-01-01", _split(shuffled, 2))
    result = verify_rewrite(old_files, new, "parquet")
    assert result.problem is None
    assert result.before.rows == result.after.rows == len(ROWS)
    assert result.before.checksum == result.after.checksum
    assert result.after.columns == {"id": "BIGINT", "label": "VARCHAR", "amount": "DOUBLE"}


@pytest.mark.parametrize(
    ("change", "rows"),
    [
        ("one value altered", [(0, "x", 0.0)] + ROWS[1:]),
        ("one row lost", ROWS[1:]),
        ("one row duplicated", ROWS + [ROWS[5]]),
        ("a row lost and another duplicated", ROWS[1:] + [ROWS[2]]),
        ("two rows lost and another one duplicated twice", ROWS[2:] + [ROWS[9], ROWS[9]]),
        ("a NULL moved to another column", [(0, "label-0", None)] + ROWS[1:]),
    ],
)
def test_changed_content_fails_with_both_figures(tmp_path, old_files, change, rows):
    new = _write(tmp_path / "staged", [_table(rows)])
    result = verify_rewrite(old_files, new, "parquet")
    assert result.problem is not None and result.problem.startswith("content differs"), change
    assert f"rows={result.before.rows} checksum={result.before.checksum}" in result.problem
    assert f"rows={result.after.rows} checksum={result.after.checksum}" in result.problem


def test_duplicates_that_cancel_in_a_xor_still_differ(tmp_path):
    """{A, A, B} -> {B, C, C}: same count, same XOR of hashes; the sum differs."""
    a, b, c = (1, "a", 1.0), (2, "b", 2.0), (3, "c", 3.0)
    old = _write(tmp_path / "old", [_table([a, a, b])])
    new = _write(tmp_path / "new", [_table([b, c, c])])
    assert verify_rewrite(old, new, "parquet").problem.startswith("content differs")


def test_changed_column_type_is_a_schema_difference(tmp_path, old_files):
    table = _table(ROWS)
    narrowed = table.set_column(0, "id", table.column("id").cast(pa.int32()))
    result = verify_rewrite(old_files, _write(tmp_path / "staged", [narrowed]), "parquet")
    assert result.problem == "schema differs: id BIGINT -> INTEGER"


def test_lost_column_is_a_schema_difference(tmp_path, old_files):
    result = verify_rewrite(old_files, _write(tmp_path / "staged", [_table(ROWS).drop_columns(["amount"])]), "parquet")
    assert result.problem == "schema differs: amount lost (DOUBLE)"


def test_column_only_some_old_files_have_reads_as_null_on_both_sides(tmp_path):
    """Schema evolution: the merged old schema equals the rewrite's, NULLs where a file lacked the column."""
    first = _table(ROWS[:100]).drop_columns(["amount"])
    second = _table(ROWS[100:])
    old = _write(tmp_path / "old", [first, second])
    merged = pa.concat_tables([first.append_column("amount", pa.nulls(100, pa.float64())), second])
    assert verify_rewrite(old, _write(tmp_path / "new", [merged]), "parquet").problem is None
    lost = pa.concat_tables([first.append_column("amount", pa.nulls(100, pa.float64())), second.slice(1)])
    assert verify_rewrite(old, _write(tmp_path / "lost", [lost]), "parquet").problem.startswith("content differs")


def test_orc_files_are_verified_through_pyarrow(tmp_path):
    old = _write(tmp_path / "old", _split(ROWS, 10), "orc")
    assert verify_rewrite(old, _write(tmp_path / "same", _split(ROWS[::-1], 2), "orc"), "orc").problem is None
    altered = _write(tmp_path / "altered", [_table([(0, "x", 0.0)] + ROWS[1:])], "orc")
    assert verify_rewrite(old, altered, "orc").problem.startswith("content differs")


def test_unreadable_new_file_fails_verification(tmp_path, old_files):
    broken = tmp_path / "staged" / "part-0000.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"PAR1 this is not a parquet file")
    result = verify_rewrite(old_files, [str(broken)], "parquet")
    assert result.problem.startswith("cannot read the new files to verify them")


def test_schema_difference_names_every_change():
    before = {"a": "BIGINT", "b": "VARCHAR", "c": "DATE"}
    after = {"a": "INTEGER", "c": "DATE", "d": "DOUBLE"}
    assert schema_difference(before, after) == "schema differs: b lost (VARCHAR); d added (DOUBLE); a BIGINT -> INTEGER"
    assert schema_difference(before, dict(reversed(before.items()))) is None
