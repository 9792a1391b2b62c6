"""Publishing staged engine output: one deterministic file per date, empty dates included."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.features.compute import (
    PART_FILE,
    FeatureComputeError,
    chunk_ranges,
    offline_path,
    prepare_feature_job,
    publish_feature_job,
)
from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, WindowAggregate


def write_source(folder: Path) -> None:
    """A one-event source: preparing a job reads the sources' schemas to type its query."""
    folder.mkdir()
    pq.write_table(pa.table({"user_id": [1], "ts": pa.array([0], pa.timestamp("us"))}), folder / "part-0.parquet")


def view(source) -> FeatureViewDefinition:
    return FeatureViewDefinition(
        name="users",
        entity_keys=("user_id",),
        sources=(SourceTable("events", str(source), "ts"),),
        features=(WindowAggregate("clicks_7d", "count", None, 7),),
    )


def stage_like_spark(job, rows_by_date) -> None:
    """Write what the Spark application writes: a part file per non-empty date and _empty."""
    output = Path(job["output"])
    for feature_date, rows in rows_by_date.items():
        directory = output / f"feature_date={feature_date}"
        directory.mkdir(parents=True)
        table = pa.table({"user_id": [r[0] for r in rows], "clicks_7d": [r[1] for r in rows]})
        pq.write_table(table, directory / "part-00003-abc.c000.snappy.parquet")
    (output / "_empty").mkdir(parents=True)
    empty = pa.table({"user_id": pa.array([], pa.int64()), "clicks_7d": pa.array([], pa.int64())})
    pq.write_table(empty, output / "_empty" / "part-00000-xyz.snappy.parquet")


def test_every_job_date_is_published_and_empty_dates_get_the_schema(tmp_path):
    write_source(tmp_path / "src")
    defn = view(tmp_path / "src")
    job = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-03")
    stage_like_spark(job, {"2024-01-01": [(1, 2), (2, 3)], "2024-01-03": [(1, 1)]})
    result = publish_feature_job(defn, job)
    assert result["published"] == ["2024-01-01", "2024-01-02", "2024-01-03"] and result["latest"] == "2024-01-03"
    root = offline_path(tmp_path, "users")
    empty = pq.read_table(root / "feature_date=2024-01-02" / PART_FILE)
    assert empty.num_rows == 0 and empty.schema.names == ["user_id", "clicks_7d"]
    assert pq.read_table(root / "feature_date=2024-01-01" / PART_FILE).to_pydict() == {
        "user_id": [1, 2],
        "clicks_7d": [2, 3],
    }
    assert not (tmp_path / "_staging" / "features" / "users" / job["version"]).exists()


def test_output_with_the_wrong_columns_publishes_nothing(tmp_path):
    write_source(tmp_path / "src")
    defn = view(tmp_path / "src")
    job = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-01")
    directory = Path(job["output"]) / "feature_date=2024-01-01"
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": [1], "clicks": [2]}), directory / "part-00000.parquet")
    with pytest.raises(FeatureComputeError, match=r"has columns \['user_id', 'clicks'\], expected"):
        publish_feature_job(defn, job)
    assert not offline_path(tmp_path, "users").exists()


def test_two_spark_files_for_one_date_are_refused(tmp_path):
    write_source(tmp_path / "src")
    defn = view(tmp_path / "src")
    job = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-01")
    directory = Path(job["output"]) / "feature_date=2024-01-01"
    directory.mkdir(parents=True)
    for name in ("part-00000.parquet", "part-00001.parquet"):
        pq.write_table(pa.table({"user_id": [1], "clicks_7d": [2]}), directory / name)
    with pytest.raises(FeatureComputeError, match="has 2 Parquet files, expected exactly 1"):
        publish_feature_job(defn, job)


def test_chunk_ranges_cover_the_range_in_order_without_overlap():
    assert chunk_ranges("2024-01-01", "2024-01-10", 4) == [
        {"start": "2024-01-01", "end": "2024-01-04"},
        {"start": "2024-01-05", "end": "2024-01-08"},
        {"start": "2024-01-09", "end": "2024-01-10"},
    ]
    assert chunk_ranges("2024-01-01", "2024-01-01", 30) == [{"start": "2024-01-01", "end": "2024-01-01"}]
    with pytest.raises(ValueError, match="chunk_days must be >= 1"):
        chunk_ranges("2024-01-01", "2024-01-02", 0)


def test_prepare_removes_earlier_attempts_of_its_chunk_and_stale_staging_only(tmp_path):
    import os
    import time

    from dagfoundry.features.compute import owner_key, staging_root

    write_source(tmp_path / "src")
    defn = view(tmp_path / "src")
    mine = owner_key("scheduled__2024-01-01T00:00:00+00:00", "2024-01-01", "2024-01-01")
    earlier = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-01", owner=mine)
    # same dates, another run (a parallel backfill): live, kept
    parallel = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-01", owner=owner_key("manual__x", "2024-01-01", "2024-01-01"))
    # same run, the next chunk: live, kept
    neighbour = prepare_feature_job(defn, tmp_path, "2024-01-02", "2024-01-02", owner=owner_key("scheduled__2024-01-01T00:00:00+00:00", "2024-01-02", "2024-01-02"))
    stale = prepare_feature_job(defn, tmp_path, "2024-01-03", "2024-01-03", owner=owner_key("old", "2024-01-03", "2024-01-03"))
    old = time.time() - 25 * 3600
    for directory, _, files in os.walk(Path(stale["job_file"]).parent):
        for name in [".", *files]:
            os.utime(os.path.join(directory, name), (old, old))

    retry = prepare_feature_job(defn, tmp_path, "2024-01-01", "2024-01-01", owner=mine)

    assert sorted(retry["staging_removed"]) == sorted([earlier["version"], stale["version"]])
    left = sorted(p.name for p in staging_root(tmp_path, "users").iterdir())
    assert left == sorted([parallel["version"], neighbour["version"], retry["version"]])
