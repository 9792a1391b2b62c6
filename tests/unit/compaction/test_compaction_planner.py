"""Planner and settings: which partitions are chosen and why, without Spark."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dagfoundry.compaction.planner import CompactionPlanError, plan_compaction
from dagfoundry.compaction.settings import CompactionConfigError, CompactionSettings

MIB = 1024 * 1024
NOW = 1_700_000_000.0


def _files(directory: Path, sizes: list[int], *, age: float = 7200, suffix: str = ".parquet") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, size in enumerate(sizes):
        path = directory / f"part-{index:05d}{suffix}"
        path.write_bytes(b"x" * size)
        os.utime(path, (NOW - age, NOW - age))
    os.utime(directory, (NOW - age, NOW - age))


def _settings(lake: Path, **overrides) -> CompactionSettings:
    return CompactionSettings(**{"lake_root": lake, "tables": ("t",), "target_file_bytes": MIB, **overrides})


def _decisions(lake: Path, **overrides) -> dict[str, dict]:
    plan = plan_compaction(_settings(lake, **overrides), version="v", now=NOW)
    return {d["partition"]: d for d in plan.to_dict()["decisions"]}


def test_small_closed_partition_is_chosen_with_ceil_target(tmp_path):
    _files(tmp_path / "t" / "dt=1", [300_000] * 10)
    decision = _decisions(tmp_path)["dt=1"]
    assert decision["chosen"] and decision["target_files"] == 3 and decision["small_files"] == 10


def test_recently_changed_partition_is_left_to_its_writers(tmp_path):
    _files(tmp_path / "t" / "dt=1", [1000] * 10, age=60)
    assert _decisions(tmp_path)["dt=1"]["reason"].startswith("still open")


def test_too_few_small_files_is_not_worth_it(tmp_path):
    _files(tmp_path / "t" / "dt=1", [MIB] * 4 + [1000] * 3)
    assert _decisions(tmp_path, min_small_files=5)["dt=1"]["reason"].startswith("only 3 small files")


def test_partition_already_compacted_is_skipped(tmp_path):
    _files(tmp_path / "t" / "dt=1", [1000] * 10)
    names = sorted(p.name for p in (tmp_path / "t" / "dt=1").iterdir())
    (tmp_path / "t" / "dt=1" / "_compaction.json").write_text(json.dumps({"version": "v0", "files": names}))
    os.utime(tmp_path / "t" / "dt=1", (NOW - 7200, NOW - 7200))
    assert _decisions(tmp_path)["dt=1"]["reason"].startswith("already compacted")


def test_foreign_entries_and_mixed_formats_block_a_partition(tmp_path):
    _files(tmp_path / "t" / "dt=1", [1000] * 10)
    (tmp_path / "t" / "dt=1" / "notes.txt").write_text("x")
    _files(tmp_path / "t" / "dt=2", [1000] * 10)
    _files(tmp_path / "t" / "dt=2", [1000] * 2, suffix=".orc")
    decisions = _decisions(tmp_path)
    assert "notes.txt" in decisions["dt=1"]["reason"] and not decisions["dt=1"]["chosen"]
    assert decisions["dt=2"]["reason"].startswith("mixes data formats")


def test_partition_in_another_format_than_the_job_writes_is_left_alone(tmp_path):
    _files(tmp_path / "t" / "dt=1", [1000] * 10, suffix=".orc")
    _files(tmp_path / "t" / "dt=2", [1000] * 10)
    decisions = _decisions(tmp_path)
    assert not decisions["dt=1"]["chosen"] and decisions["dt=2"]["chosen"]
    assert decisions["dt=1"]["reason"] == "holds orc files and this job writes parquet: compaction keeps a table's format"
    assert _decisions(tmp_path, output_format="orc", compression="zlib")["dt=1"]["chosen"]


def test_hidden_files_and_nested_partitions(tmp_path):
    _files(tmp_path / "t" / "region=eu" / "dt=1", [1000] * 10)
    (tmp_path / "t" / "region=eu" / "dt=1" / ".part-0.crc").write_text("x")
    assert _decisions(tmp_path)["region=eu/dt=1"]["files"] == 10


def test_unpartitioned_table_is_one_partition(tmp_path):
    _files(tmp_path / "t", [1000] * 10)
    assert _decisions(tmp_path)[""]["chosen"]


def test_batches_respect_partition_and_byte_limits(tmp_path):
    for day in range(5):
        _files(tmp_path / "t" / f"dt={day}", [100_000] * 10)
    plan = plan_compaction(_settings(tmp_path, max_partitions_per_batch=2), version="v", now=NOW)
    assert [len(b) for b in plan.batches] == [2, 2, 1]
    plan = plan_compaction(_settings(tmp_path, max_bytes_per_batch=2_500_000), version="v", now=NOW)
    assert [len(b) for b in plan.batches] == [2, 2, 1]


def test_patterns_match_tables_and_missing_named_table_fails(tmp_path):
    _files(tmp_path / "db" / "a" / "dt=1", [1000] * 10)
    _files(tmp_path / "db" / "b" / "dt=1", [1000] * 10)
    plan = plan_compaction(_settings(tmp_path, tables=("db/*",)), version="v", now=NOW)
    assert sorted({d.table for d in plan.decisions}) == ["db/a", "db/b"]
    with pytest.raises(CompactionPlanError, match="table 'db/c' not found"):
        plan_compaction(_settings(tmp_path, tables=("db/c",)), version="v", now=NOW)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tables": ()}, "at least one table"),
        ({"tables": ("../x",)}, "relative path under the lake root"),
        ({"tables": ("_staging/x",)}, "hidden or reserved"),
        ({"target_file_bytes": 10}, "below 1 MiB"),
        ({"output_format": "csv"}, "output_format: 'csv'"),
        ({"output_format": "orc", "compression": "gzip"}, "compression: 'gzip' is not allowed for orc"),
        ({"min_small_files": 1}, "min_small_files: 1"),
    ],
)
def test_invalid_settings_name_the_setting(tmp_path, overrides, message):
    with pytest.raises(CompactionConfigError, match=message):
        _settings(tmp_path, **overrides)


def test_package_imports_only_the_standard_library():
    import subprocess
    import sys

    code = (
        "import sys; import dagfoundry.compaction; "
        "heavy = [m for m in ('pyspark', 'pyarrow', 'pandas', 'numpy', 'airflow') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
