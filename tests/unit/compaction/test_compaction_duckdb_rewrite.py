"""The embedded engine's rewrite on real files: DuckDB's COPY where it keeps the input's schema,
pyarrow's writer where COPY would change it, and the result verifies either way."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.compaction import CompactionSettings, plan_step, publish_step
from dagfoundry.compaction.duckdb_rewrite import UnsupportedByEngineError, rewrite_batch
from dagfoundry.compaction.publisher import CompactionVerificationError
from dagfoundry.errors import DagfoundryError

TABLE = "events/clicks"


def _lake(root: Path, columns: dict[str, pa.Array], *, files: int = 40, days: int = 2) -> None:
    """Write ``files`` small files per day of 1,000 rows: unique ids, ``columns`` beside them."""
    for day in range(days):
        folder = root / TABLE / f"dt=2024-06-0{day + 1}"
        folder.mkdir(parents=True)
        for index in range(files):
            first = (day * files + index) * 1000
            table = pa.table({"id": pa.array(range(first, first + 1000), pa.int64()), **columns})
            pq.write_table(table, folder / f"part-{index:04d}.parquet")


def _noisy_lake(root: Path, *, files: int) -> None:
    """Write one day of files whose text barely compresses (about 25 KB each)."""
    folder = root / TABLE / "dt=2024-06-01"
    folder.mkdir(parents=True)
    for index in range(files):
        ids = range(index * 1000, (index + 1) * 1000)
        noise = [f"{i * 2654435761 % 4294967291:010d}{i * 40503 % 65521:05d}" for i in ids]
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "noise": pa.array(noise)}),
                       folder / f"part-{index:04d}.parquet")


def _run(root: Path, *, target_bytes: int = 1024 * 1024, sort_columns: tuple[str, ...] = ()) -> dict:
    settings = CompactionSettings(lake_root=root, tables=(TABLE,), target_file_bytes=target_bytes,
                                  closed_after_seconds=0, sort_columns=sort_columns)
    plan = plan_step(settings, version="v1")
    (batch_file,) = plan["batch_files"]
    result = rewrite_batch(batch_file)
    publish_step(batch_file)
    return result


def _footer_columns(directory: Path) -> set[tuple[str, str]]:
    """Return (column, repetition) as the compacted files' footers declare them."""
    found = set()
    for path in sorted(directory.glob("*.parquet")):
        schema = pq.read_metadata(path).schema
        found |= {(schema.column(i).name, "OPTIONAL" if schema.column(i).max_definition_level else "REQUIRED")
                  for i in range(len(schema))}
    return found


def _rows_per_day(root: Path) -> dict[str, list[int]]:
    return {day.name: sorted(pq.read_table(day).column("id").to_pylist()) for day in sorted((root / TABLE).iterdir())}


def test_copy_writes_null_free_optional_columns_as_optional(tmp_path):
    _lake(tmp_path, {"score": pa.array([i / 3 for i in range(1000)]), "label": pa.array(["a"] * 1000)})
    before = _rows_per_day(tmp_path)
    result = _run(tmp_path)
    assert {p["writer"] for p in result["partitions"]} == {"duckdb copy"}
    assert _rows_per_day(tmp_path) == before
    day = tmp_path / TABLE / "dt=2024-06-01"
    assert _footer_columns(day) == {("id", "OPTIONAL"), ("score", "OPTIONAL"), ("label", "OPTIONAL")}


def test_copy_splits_into_files_of_about_the_target_size(tmp_path):
    _noisy_lake(tmp_path, files=400)
    before = _rows_per_day(tmp_path)
    result = _run(tmp_path, target_bytes=1024 * 1024)
    (partition,) = result["partitions"]
    names = [f["name"] for f in partition["files"]]
    assert partition["writer"] == "duckdb copy" and len(names) > 1
    assert names == [f"part-{i:05d}.parquet" for i in range(len(names))]
    assert _rows_per_day(tmp_path) == before


@pytest.mark.parametrize("column", [
    pa.array([dt.datetime(2024, 6, 1)] * 1000, pa.timestamp("ms")),
    pa.array(["x"] * 1000, pa.large_string()),
    pa.array(["a", "b"] * 500).dictionary_encode(),
])
def test_a_type_copy_would_change_is_written_by_pyarrow_unchanged(tmp_path, column):
    _lake(tmp_path, {"value": column}, files=10, days=1)
    folder = tmp_path / TABLE / "dt=2024-06-01"
    schema = pq.read_schema(folder / "part-0000.parquet").remove_metadata()
    result = _run(tmp_path)
    assert [p["writer"] for p in result["partitions"]] == ["pyarrow"]
    (compacted,) = sorted(folder.glob("*.parquet"))
    assert pq.read_schema(compacted).remove_metadata() == schema


def test_sorted_output_into_several_files_is_ordered_across_them(tmp_path):
    _noisy_lake(tmp_path, files=400)
    result = _run(tmp_path, sort_columns=("noise",))
    (partition,) = result["partitions"]
    assert partition["writer"] == "pyarrow" and len(partition["files"]) > 1
    folder = tmp_path / TABLE / "dt=2024-06-01"
    noise = [v for name in sorted(p.name for p in folder.glob("*.parquet"))
             for v in pq.read_table(folder / name).column("noise").to_pylist()]
    assert noise == sorted(noise)


def _drop_a_row(table: pa.Table) -> pa.Table:
    return table.slice(1)


def _repeat_a_row(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 1)])


def _alter_a_value(table: pa.Table) -> pa.Table:
    scores = table.column("score").to_pylist()
    return table.set_column(table.schema.get_field_index("score"), "score", pa.array([scores[0] + 1, *scores[1:]]))


@pytest.mark.parametrize("tamper", [_drop_a_row, _repeat_a_row, _alter_a_value])
def test_staged_output_that_lost_repeated_or_altered_a_row_is_not_published(tmp_path, tamper):
    """A writer that reports what it wrote but wrote the wrong rows: verification catches it."""
    _lake(tmp_path, {"score": pa.array([i / 3 for i in range(1000)])}, files=20, days=1)
    folder = tmp_path / TABLE / "dt=2024-06-01"
    before = sorted(p.name for p in folder.glob("*.parquet"))
    settings = CompactionSettings(lake_root=tmp_path, tables=(TABLE,), target_file_bytes=1024 * 1024,
                                  closed_after_seconds=0)
    (batch_file,) = plan_step(settings, version="v1")["batch_files"]
    result = rewrite_batch(batch_file)
    (partition,) = result["partitions"]
    staged = tmp_path / "_staging" / TABLE / "dt=2024-06-01" / "v1" / partition["files"][0]["name"]
    pq.write_table(tamper(pq.read_table(staged)), staged)
    partition["files"][0]["size"] = staged.stat().st_size
    result_path = Path(batch_file).with_suffix(".result.json")
    result_path.write_text(json.dumps(result))
    with pytest.raises(CompactionVerificationError, match="content differs"):
        publish_step(batch_file)
    assert sorted(p.name for p in folder.glob("*.parquet")) == before
    assert not staged.exists()


def test_unsupported_by_engine_is_a_dagfoundry_error():
    assert issubclass(UnsupportedByEngineError, DagfoundryError)
