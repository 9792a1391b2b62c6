"""Verification and formats with real Spark: a rewrite that lost a row and a type change are
discarded with the figures; INT96 tables keep INT96 when the spec says so; ORC tables compact.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import pytest
from small_files import age_tree, data_files

from dagfoundry.compaction import CompactionSettings, plan_step, publish_step
from dagfoundry.compaction.publisher import CompactionVerificationError
from dagfoundry.spark_submit import submit_spark_app

pytestmark = pytest.mark.integration

PARTITION = "dt=2024-05-01"
FILES, ROWS = 30, 40


def _events(first: int):
    import pyarrow as pa

    ids = list(range(first, first + ROWS))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "at": pa.array([dt.datetime(2024, 5, 1) + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        "note": pa.array([None if i % 5 == 0 else f"n{i}" for i in ids]),
    })


def _write_table(directory: Path, file_format: str, **options) -> None:
    import pyarrow.orc as orc
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    for index in range(FILES):
        path = directory / f"part-{index:04d}.{file_format}"
        if file_format == "orc":
            orc.write_table(_events(index * ROWS), path)
        else:
            pq.write_table(_events(index * ROWS), path, **options)


def _read(directory: Path):
    """Return a partition's rows sorted by id, and its Arrow schema, as pyarrow readers see them."""
    import pyarrow as pa
    import pyarrow.orc as orc
    import pyarrow.parquet as pq

    names = data_files(directory)
    tables = [orc.read_table(directory / n) if n.endswith(".orc") else pq.read_table(directory / n) for n in names]
    table = pa.concat_tables(tables).sort_by("id")
    return table.to_pylist(), table.schema


def _compact(lake: Path, tables: tuple[str, ...], version: str, conf: dict | None = None, **settings) -> dict:
    """Plan and rewrite (one Spark application); return the plan. Publishing is the caller's."""
    job = CompactionSettings(lake_root=lake, tables=tables, target_file_bytes=1024 * 1024, closed_after_seconds=60,
                             max_partitions_per_batch=1, **settings)
    plan = plan_step(job, version=version)
    submit_spark_app("compaction_rewrite", [f for args in plan["spark_args"] for f in args], conf=conf)
    return plan


def _batch_of(plan: dict, table: str) -> str:
    return next(f for f, keys in zip(plan["batch_files"], plan["batches"]) if keys[0].startswith(table))


def _drop_a_row_from_the_staged_files(batch_file: str) -> None:
    """Play a rewrite that lost a row: rewrite one staged file without its first row, as reported."""
    import pyarrow.parquet as pq

    batch = json.loads(Path(batch_file).read_text())
    result_path = Path(batch["result_path"])
    result = json.loads(result_path.read_text())
    staged = Path(batch["partitions"][0]["staging_dir"])
    entry = result["partitions"][0]["files"][0]
    path = staged / entry["name"]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    entry["size"] = os.path.getsize(path)
    result_path.write_text(json.dumps(result))


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark_available):
    root = tmp_path_factory.mktemp("formats")
    _write_table(root / "int96" / PARTITION, "parquet", use_deprecated_int96_timestamps=True)
    _write_table(root / "lossy" / PARTITION, "parquet")
    _write_table(root / "orc" / PARTITION, "orc")
    age_tree(root, 3600)
    before = {table: _read(root / table / PARTITION) for table in ("int96", "lossy", "orc")}
    plan = _compact(root, ("int96", "lossy"), "v1")
    _drop_a_row_from_the_staged_files(_batch_of(plan, "lossy"))
    failures = {}
    for table in ("int96", "lossy"):
        with pytest.raises(CompactionVerificationError) as caught:
            publish_step(_batch_of(plan, table))
        failures[table] = str(caught.value)
    after_failures = {table: _read(root / table / PARTITION) for table in ("int96", "lossy")}
    int96_plan = _compact(root, ("int96",), "v2", conf={"spark.sql.parquet.outputTimestampType": "INT96"})
    int96_published = [publish_step(f) for f in int96_plan["batch_files"]]
    orc_plan = _compact(root, ("orc",), "v3", output_format="orc", compression="zlib")
    orc_published = [publish_step(f) for f in orc_plan["batch_files"]]
    return {"root": root, "before": before, "failures": failures, "after_failures": after_failures,
            "int96": int96_published, "orc": orc_published}


def test_a_rewrite_that_lost_a_row_is_discarded_with_both_figures(lake):
    message = lake["failures"]["lossy"]
    rows = FILES * ROWS
    assert f"content differs: old files rows={rows} checksum=" in message
    assert f"new files rows={rows - 1} checksum=" in message
    assert lake["after_failures"]["lossy"] == lake["before"]["lossy"]
    assert len(data_files(lake["root"] / "lossy" / PARTITION)) == FILES
    staging = lake["root"] / "_staging" / "lossy" / PARTITION
    assert [p for p in staging.iterdir() if p.is_dir()] == [], "the staged files of a failed verification remain"


def test_int96_timestamps_rewritten_as_micros_are_a_type_change_readers_would_see(lake):
    assert "schema differs: at TIMESTAMP -> TIMESTAMP WITH TIME ZONE" in lake["failures"]["int96"]
    assert lake["after_failures"]["int96"] == lake["before"]["int96"]


def test_int96_table_compacts_when_the_spec_keeps_int96(lake):
    [[metrics]] = [batch["partitions"] for batch in lake["int96"]]
    assert metrics["status"] == "published" and metrics["rows"] == FILES * ROWS
    assert _read(lake["root"] / "int96" / PARTITION) == lake["before"]["int96"]


def test_orc_table_compacts_to_orc_with_identical_content(lake):
    live = lake["root"] / "orc" / PARTITION
    names = data_files(live)
    [[metrics]] = [batch["partitions"] for batch in lake["orc"]]
    assert len(names) == metrics["files_written"] == math.ceil(metrics["bytes_before"] / 2**20)
    assert all(n.endswith(".orc") for n in names)
    assert _read(live) == lake["before"]["orc"]
