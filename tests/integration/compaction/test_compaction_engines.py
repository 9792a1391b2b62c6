"""One compaction batch on both engines: the same rows, the same schema, the same file counts.

The lake is copied; each copy is planned, rewritten by one engine (DuckDB in process, Spark
local through spark-submit) and published through the same verification. Then the two
compacted tables are compared with each other and with the input.
"""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
from pathlib import Path

import pytest
from small_files import age_tree, data_files

from dagfoundry.compaction import CompactionSettings, plan_step, publish_step
from dagfoundry.compaction.duckdb_rewrite import rewrite_batch
from dagfoundry.spark_submit import submit_spark_app

pytestmark = pytest.mark.integration

TABLE = "events/typed"
DAYS = ("dt=2024-05-01", "dt=2024-05-02")
FILES, ROWS = 25, 60


def _rows(first: int):
    import pyarrow as pa

    ids = list(range(first, first + ROWS))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "customer_id": pa.array([i % 17 for i in ids], pa.int32()),
        "amount": pa.array([None if i % 11 == 0 else i / 7 for i in ids], pa.float64()),
        "price": pa.array([decimal.Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
        "note": pa.array([None if i % 5 == 0 else f"n{i}é" for i in ids]),
        "at": pa.array([dt.datetime(2024, 5, 1) + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        "at_utc": pa.array([dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in ids],
                           pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2024, 5, 1) + dt.timedelta(days=i % 3) for i in ids], pa.date32()),
        "tags": pa.array([[f"t{i % 3}", f"u{i % 2}"] for i in ids], pa.list_(pa.string())),
    })


def _read(directory: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(directory / n) for n in data_files(directory)]).sort_by("id")
    return table.to_pylist(), table.schema


@pytest.fixture(scope="module")
def compacted(tmp_path_factory, spark_available):
    import pyarrow.parquet as pq

    base = tmp_path_factory.mktemp("engines")
    source = base / "source"
    for day_index, day in enumerate(DAYS):
        folder = source / TABLE / day
        folder.mkdir(parents=True)
        for index in range(FILES):
            pq.write_table(_rows((day_index * FILES + index) * ROWS), folder / f"part-{index:04d}.parquet")
    age_tree(source, 3600)
    before = {day: _read(source / TABLE / day) for day in DAYS}
    results = {}
    for engine in ("duckdb", "spark"):
        lake = base / engine
        shutil.copytree(source, lake)
        age_tree(lake, 3600)
        settings = CompactionSettings(lake_root=lake, tables=(TABLE,), target_file_bytes=1024 * 1024,
                                      closed_after_seconds=60, sort_columns=("customer_id",))
        plan = plan_step(settings, version=f"v-{engine}")
        for batch_file in plan["batch_files"]:
            if engine == "duckdb":
                rewrite_batch(batch_file)
            else:
                submit_spark_app("compaction_rewrite", [batch_file])
            publish_step(batch_file)
        results[engine] = {day: _read(lake / TABLE / day) for day in DAYS}
        results[engine]["files"] = {day: data_files(lake / TABLE / day) for day in DAYS}
    return {"before": before, **results}


def test_both_engines_keep_every_row_and_value(compacted):
    for day in DAYS:
        rows, _ = compacted["before"][day]
        assert compacted["duckdb"][day][0] == rows, f"{day}: DuckDB changed rows"
        assert compacted["spark"][day][0] == rows, f"{day}: Spark changed rows"


def test_both_engines_write_the_same_schema_and_file_count(compacted):
    for day in DAYS:
        _, schema = compacted["before"][day]
        duck, spark = compacted["duckdb"][day][1], compacted["spark"][day][1]
        assert duck.remove_metadata().equals(spark.remove_metadata()), f"{day}: {duck} vs {spark}"
        assert [f.name for f in duck] == schema.names
        assert len(compacted["duckdb"]["files"][day]) == len(compacted["spark"]["files"][day]) == 1
        assert len(compacted["before"][day][0]) == FILES * ROWS


def test_the_embedded_engine_refuses_int96_files_and_leaves_the_partition(tmp_path):
    import pyarrow.parquet as pq

    folder = tmp_path / TABLE / DAYS[0]
    folder.mkdir(parents=True)
    for index in range(FILES):
        pq.write_table(_rows(index * ROWS), folder / f"part-{index:04d}.parquet", use_deprecated_int96_timestamps=True)
    age_tree(tmp_path, 3600)
    names = data_files(folder)
    settings = CompactionSettings(lake_root=tmp_path, tables=(TABLE,), target_file_bytes=1024 * 1024,
                                  closed_after_seconds=60)
    plan = plan_step(settings, version="v-int96")
    (batch_file,) = plan["batch_files"]
    result = rewrite_batch(batch_file)
    (partition,) = result["partitions"]
    assert not partition["ok"] and "INT96" in partition["error"] and "engine: spark" in partition["error"]
    with pytest.raises(Exception, match="INT96"):
        publish_step(batch_file)
    assert data_files(folder) == names
