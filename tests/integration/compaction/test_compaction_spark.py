"""Compaction end to end with real Spark: thousands of small files, a concurrent reader,
a late file, an idempotent re-run, rollback and cleanup.

One Spark application serves every test of this module (module-scoped fixture).
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import pytest
from small_files import age_tree, data_files, partition_rows, write_small_files

from dagfoundry.compaction import CompactionSettings, cleanup_step, plan_step, publish_step, report_step, rollback_step
from dagfoundry.compaction.maintenance import CompactionRollbackError
from dagfoundry.spark_submit import submit_spark_app

pytestmark = pytest.mark.integration

TABLE = "shop/events"
COMPACTED = ["dt=2024-01-01", "dt=2024-01-02", "region=eu/dt=2024-01-03"]
OPEN = "dt=2024-01-04"
HEALTHY = "dt=2023-12-31"
READ_PARTITION = COMPACTED[0]
LATE_PARTITION = COMPACTED[1]


def _reader_loop(directory: Path, truth: int, stop: threading.Event, seen: list) -> None:
    """List the partition, read every listed file, record (files listed, rows) or a retry."""
    import pyarrow.parquet as pq

    while not stop.is_set():
        names = [n for n in os.listdir(directory) if not n.startswith(("_", "."))]
        try:
            rows = sum(pq.read_metadata(directory / n).num_rows for n in names)
        except FileNotFoundError:
            seen.append(("retry", None))
            continue
        seen.append((len(names), rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory, spark_available):
    lake = tmp_path_factory.mktemp("lake")
    table_dir = lake / TABLE
    next_id = 0
    for seed, partition in enumerate(COMPACTED):
        next_id = write_small_files(table_dir / partition, files=1000, rows=20, first_id=next_id, seed=seed)
    write_small_files(table_dir / HEALTHY, files=2, rows=500, first_id=next_id, seed=10)
    age_tree(table_dir, 7200)
    write_small_files(table_dir / OPEN, files=50, rows=20, first_id=10**6, seed=11)  # written just now
    before = {p: partition_rows(table_dir / p) for p in (*COMPACTED, HEALTHY, OPEN)}
    listing_before = {p: data_files(table_dir / p) for p in (HEALTHY, OPEN)}
    bytes_before = {p: sum(os.path.getsize(table_dir / p / n) for n in data_files(table_dir / p)) for p in COMPACTED}
    settings = CompactionSettings(
        lake_root=lake, tables=("shop/*",), target_file_bytes=1024 * 1024, closed_after_seconds=3600,
        max_partitions_per_batch=2, abandon_staging_after_seconds=0,
    )
    plan = plan_step(settings, version="v1")
    submit_spark_app("compaction_rewrite", [f for args in plan["spark_args"] for f in args])

    late_dir = lake / "late"
    write_small_files(late_dir, files=1, rows=7, first_id=5 * 10**6, seed=99)
    late_name = data_files(late_dir)[0]
    os.rename(late_dir / late_name, table_dir / LATE_PARTITION / late_name)

    stop, seen = threading.Event(), []
    truth = len(before[READ_PARTITION])
    reader = threading.Thread(target=_reader_loop, args=(table_dir / READ_PARTITION, truth, stop, seen))
    reader.start()
    time.sleep(1.0)
    published = [publish_step(f) for f in plan["batch_files"]]
    time.sleep(1.0)
    stop.set()
    reader.join()
    report = report_step(settings, version="v1")
    return {
        "lake": lake, "table_dir": table_dir, "settings": settings, "plan": plan, "published": published,
        "report": report, "before": before, "listing_before": listing_before, "bytes_before": bytes_before,
        "seen": seen, "truth": truth, "late_name": late_name,
    }


def test_plan_chooses_closed_partitions_with_small_files(run):
    decisions = {d["partition"]: d for d in run["plan"]["decisions"]}
    assert sorted(p for p, d in decisions.items() if d["chosen"]) == sorted(COMPACTED)
    assert decisions[OPEN]["reason"].startswith("still open")
    assert decisions[HEALTHY]["reason"].startswith("only 2 small files")
    assert len(run["plan"]["batch_files"]) == 2  # three partitions, two per batch


def test_partitions_compacted_to_expected_file_counts(run):
    for partition in COMPACTED:
        expected = math.ceil(run["bytes_before"][partition] / (1024 * 1024))
        late = 1 if partition == LATE_PARTITION else 0
        assert len(data_files(run["table_dir"] / partition)) == expected + late, partition
        assert expected >= 2  # the data really spans several target-sized files


def test_content_is_identical(run):
    for partition in COMPACTED:
        rows = partition_rows(run["table_dir"] / partition)
        expected = run["before"][partition]
        if partition == LATE_PARTITION:
            assert len(rows) == len(expected) + 7
            rows = [r for r in rows if r[0] < 5 * 10**6]
        assert rows == expected, partition


def test_open_and_healthy_partitions_are_untouched(run):
    for partition, names in run["listing_before"].items():
        assert data_files(run["table_dir"] / partition) == names
        assert partition_rows(run["table_dir"] / partition) == run["before"][partition]


def test_concurrent_reader_never_sees_a_wrong_count(run):
    counts = [s for s in run["seen"] if s[0] != "retry"]
    assert {rows for _, rows in counts} == {run["truth"]}
    listed = {files for files, _ in counts}
    assert 1000 in listed and min(listed) < 10, f"the reader did not span the exchange: {listed}"


def test_late_file_is_kept(run):
    assert run["late_name"] in data_files(run["table_dir"] / LATE_PARTITION)
    metrics = {m["partition"]: m for m in run["report"]["partitions"]}
    assert metrics[LATE_PARTITION]["late_files"] == 1


def test_metrics_describe_the_run(run):
    summary = run["report"]["summary"]
    assert summary["partitions_published"] == 3 and summary["partitions_failed"] == 0
    assert summary["files_before"] == 3000
    assert summary["files_after"] == sum(len(data_files(run["table_dir"] / p)) for p in COMPACTED)
    assert summary["avg_file_bytes_after"] > 50 * summary["avg_file_bytes_before"]
    for metrics in run["report"]["partitions"]:
        assert metrics["rows"] == len(run["before"][metrics["partition"]])
        assert metrics["bytes_before"] == run["bytes_before"][metrics["partition"]]


def test_rerun_changes_nothing(run):
    table_dir = run["table_dir"]
    inodes = {p: sorted(os.stat(table_dir / p / n).st_ino for n in data_files(table_dir / p)) for p in COMPACTED}
    again = [publish_step(f) for f in run["plan"]["batch_files"]]
    assert [b["partitions"] for b in again] == [b["partitions"] for b in run["published"]]
    plan = plan_step(run["settings"], version="v2")
    assert plan["partitions_chosen"] == 0 and plan["batch_files"] == []
    assert {p: sorted(os.stat(table_dir / p / n).st_ino for n in data_files(table_dir / p)) for p in COMPACTED} == inodes


def test_rollback_restores_the_previous_version_and_keeps_late_files(run):
    table_dir = run["table_dir"]
    done = rollback_step(run["settings"], [f"{TABLE}/{LATE_PARTITION}"], version="rollback-1")
    assert done[0]["restored_version"] == "v1"
    names = data_files(table_dir / LATE_PARTITION)
    assert len(names) == 1001 and run["late_name"] in names
    rows = partition_rows(table_dir / LATE_PARTITION)
    assert [r for r in rows if r[0] < 5 * 10**6] == run["before"][LATE_PARTITION] and len(rows) == 1000 * 20 + 7
    with pytest.raises(CompactionRollbackError, match="not a compacted version"):
        rollback_step(run["settings"], [f"{TABLE}/{LATE_PARTITION}"], version="rollback-2")


def test_cleanup_purges_trash_only_after_retention(run):
    lake, settings = run["lake"], run["settings"]
    kept = lake / "_trash" / TABLE / COMPACTED[0] / "v1"
    assert len(data_files(kept)) == 1000
    cleanup_step(settings)
    assert kept.is_dir(), "purged before the retention period"
    done = cleanup_step(settings, now=time.time() + settings.retention_seconds + 1)
    assert str(kept) in done["trash_purged"] and not kept.exists()
    leftovers = [p for p in (lake / "_staging" / TABLE).rglob("*") if p.is_dir() and "=" not in p.name]
    assert leftovers == []
