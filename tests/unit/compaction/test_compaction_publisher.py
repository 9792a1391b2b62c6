"""Verification, publishing, late files, recovery and rollback on real directories (no Spark:
the "rewrite" is done here with pyarrow, so the publish step verifies real Parquet files)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.compaction import publisher
from dagfoundry.compaction.journal import Journal, load_journal
from dagfoundry.compaction.layout import partition_lock
from dagfoundry.compaction.maintenance import rollback_partition
from dagfoundry.compaction.planner import DataFile
from dagfoundry.compaction.publisher import CompactionVerificationError, PartitionChangedError, publish_partition
from dagfoundry.compaction.recovery import recover_table


def _names(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith(("_", ".")))


def _rows(first: int, count: int) -> pa.Table:
    return pa.table({"id": pa.array(range(first, first + count), pa.int64()),
                     "label": pa.array([None if i % 3 == 0 else f"l{i}" for i in range(first, first + count)])})


def _setup(lake: Path, *, alter_one_row: bool = False) -> tuple[Journal, dict]:
    """Five small planned files in a live partition, and their rows staged as one file."""
    live = lake / "t" / "dt=1"
    live.mkdir(parents=True)
    planned = []
    for index in range(5):
        path = live / f"small-{index}.parquet"
        pq.write_table(_rows(index * 20, 20), path)
        stat = path.stat()
        planned.append(DataFile(path.name, stat.st_size, stat.st_mtime))
    journal = Journal(str(lake), "t", "dt=1", "v1", "planned", tuple(planned), 1)
    journal.advance("planned")
    journal.staged.mkdir(parents=True)
    staged = _rows(0, 100)
    if alter_one_row:
        staged = staged.set_column(0, "id", pa.array([-1, *range(1, 100)], pa.int64()))
    pq.write_table(staged, journal.staged / "big-0.parquet")
    size = (journal.staged / "big-0.parquet").stat().st_size
    figures = {"ok": True, "files": [{"name": "big-0.parquet", "size": size}], "seconds": 1.0,
               "timings": {"read_schema": 0.1, "write": 0.9}}
    return journal, figures


def test_mismatched_checksum_discards_new_files_and_names_both_figures(tmp_path):
    journal, figures = _setup(tmp_path, alter_one_row=True)
    with pytest.raises(CompactionVerificationError,
                       match=r"content differs: old files rows=100 checksum=\d+, new files rows=100 checksum=\d+"):
        publish_partition(journal, figures)
    assert not journal.staged.exists()
    assert _names(journal.location.live) == [f"small-{i}.parquet" for i in range(5)]
    discarded = load_journal(journal.path)
    assert discarded.state == "discarded" and "content differs" in discarded.metrics["reason"]


def test_failed_spark_partition_is_discarded_with_its_error(tmp_path):
    journal, figures = _setup(tmp_path)
    with pytest.raises(CompactionVerificationError, match="the rewrite failed on this partition: OOM"):
        publish_partition(journal, {"ok": False, "error": "OOM"})
    assert not journal.staged.exists()


def test_staged_file_that_differs_from_the_spark_report_is_not_published(tmp_path):
    journal, figures = _setup(tmp_path)
    (journal.staged / "stray.parquet").write_bytes(b"not from Spark")
    with pytest.raises(PartitionChangedError, match="differ from the Spark job's"):
        publish_partition(journal, figures)
    assert _names(journal.location.live) == [f"small-{i}.parquet" for i in range(5)]


def test_verified_figures_are_journaled_and_reported(tmp_path):
    journal, figures = _setup(tmp_path)
    metrics = publish_partition(journal, figures)
    verification = load_journal(journal.path).verification
    assert verification["before"] == verification["after"]
    assert verification["after"]["rows"] == 100 and verification["after"]["columns"] == {"id": "BIGINT", "label": "VARCHAR"}
    assert verification["engine"].startswith("duckdb ")
    assert metrics["rows"] == 100 and metrics["verify_seconds"] >= 0


def test_vanished_planned_file_aborts_without_publishing(tmp_path):
    journal, figures = _setup(tmp_path)
    (journal.location.live / "small-3.parquet").unlink()
    with pytest.raises(PartitionChangedError, match="vanished or changed after planning"):
        publish_partition(journal, figures)
    assert "big-0.parquet" not in _names(journal.location.live)


def test_publish_swaps_atomically_and_keeps_late_files(tmp_path):
    journal, figures = _setup(tmp_path)
    late = journal.location.live / "late.parquet"
    late.write_bytes(b"late")
    metrics = publish_partition(journal, figures)
    live = journal.location.live
    assert _names(live) == ["big-0.parquet", "late.parquet"]
    assert (live / "late.parquet").stat().st_ino == os.stat(journal.location.trash("v1") / "late.parquet").st_ino
    assert _names(journal.location.trash("v1")) == ["late.parquet"] + [f"small-{i}.parquet" for i in range(5)]
    assert metrics["files_before"] == 5 and metrics["files_after"] == 2 and metrics["late_files"] == 1
    assert publish_partition(load_journal(journal.path), figures) == metrics  # a re-run reports, changes nothing


def test_file_landing_during_the_exchange_is_carried_over(tmp_path, monkeypatch):
    journal, figures = _setup(tmp_path)
    real_exchange = publisher.exchange_directories

    def exchange_after_a_write(first: Path, second: Path) -> None:
        (second / "racer.parquet").write_bytes(b"racer")  # lands after the late-file scan
        real_exchange(first, second)

    monkeypatch.setattr(publisher, "exchange_directories", exchange_after_a_write)
    metrics = publish_partition(journal, figures)
    assert "racer.parquet" in _names(journal.location.live)
    assert metrics["late_files_after_exchange"] == 1


def test_recovery_leaves_a_locked_partition_alone_and_resumes_it_once_free(tmp_path):
    journal, figures = _setup(tmp_path)
    journal = journal.advance("verified", result=figures)
    with partition_lock(journal.location):
        actions = recover_table(tmp_path, "t", abandon_after_seconds=0)
    assert actions[0]["action"].startswith("left alone")
    actions = recover_table(tmp_path, "t", abandon_after_seconds=0)
    assert actions[0]["action"] == "published"
    assert _names(journal.location.live) == ["big-0.parquet"]


def test_young_unverified_staging_is_not_abandoned(tmp_path):
    journal, figures = _setup(tmp_path)
    journal.advance("written", result=figures)
    assert recover_table(tmp_path, "t", abandon_after_seconds=3600) == []
    assert journal.staged.is_dir()
    assert recover_table(tmp_path, "t", abandon_after_seconds=0)[0]["action"] == "discarded"
    assert not journal.staged.exists()


def test_rollback_restores_old_files_and_keeps_newer_ones(tmp_path):
    journal, figures = _setup(tmp_path)
    publish_partition(journal, figures)
    (journal.location.live / "newer.parquet").write_bytes(b"newer")
    done = rollback_partition(tmp_path, "t", "dt=1", version="rb")
    assert done["restored_version"] == "v1"
    assert _names(journal.location.live) == ["newer.parquet"] + [f"small-{i}.parquet" for i in range(5)]
