"""The lake_compaction kind end to end through Airflow: spec -> DAG -> dag.test() -> compacted lake.

Real Spark (spark-submit through the apache-spark provider's operator, two batches so the
mapped task group expands), the demo's order events as input. One scheduled run compacts,
a dry run changes nothing, a rollback run restores one day's original files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from include.demo.order_events import TABLE, write_order_events
from tests.integration.dag_runs import asset_event_count, last_asset_event_extra, load_dag, task_states

pytestmark = pytest.mark.integration

DAG_ID = "orders_compaction_e2e"
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
LATE_DAY = "2024-01-04"
FILES_PER_DAY = 40
SPEC = f"""\
kind: lake_compaction
name: {DAG_ID}
schedule: "30 * * * *"
tables: [{TABLE}]
target_file_size: 1MB
closed_after: 1h
sort_columns: [customer_id]
spark:
  max_partitions_per_batch: 2
"""

#: Same job on a Spark connection that does not exist: its rewrite fails at once, without a JVM.
BROKEN_DAG_ID = "orders_compaction_broken_spark"
BROKEN_SPEC = f"""\
kind: lake_compaction
name: {BROKEN_DAG_ID}
tables: [{TABLE}]
retries: 0
engine: spark
spark:
  conn_id: no_such_spark
"""


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory, spark_available):
    root = tmp_path_factory.mktemp("compaction_dag")
    (root / "configs").mkdir()
    (root / "configs" / "orders.yaml").write_text(SPEC)
    (root / "configs" / "broken.yaml").write_text(BROKEN_SPEC)
    lake = root / "lake"
    write_order_events(lake, dt.date.fromisoformat(DAYS[0]), days=len(DAYS), files_per_day=FILES_PER_DAY)
    age_files(lake / TABLE, hours=3)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(lake))
    # dag.test() re-parses the dags folder to serialize the DAG: it must find this spec there.
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(root / "configs"))
    yield lake
    monkeypatch.undo()


def age_files(directory: Path, *, hours: float) -> None:
    """Move the mtime of a tree ``hours`` into the past: the partitions are closed."""
    when = dt.datetime.now().timestamp() - hours * 3600
    for path in [directory, *directory.rglob("*")]:
        os.utime(path, (when, when))


def data_files(partition: Path) -> list[str]:
    return sorted(n for n in os.listdir(partition) if not n.startswith(("_", ".")))


def rows_of(partition: Path) -> list[tuple]:
    """Every row of a partition as a reader sees it (hidden files ignored), sorted."""
    import pyarrow.parquet as pq

    rows: list[tuple] = []
    for name in data_files(partition):
        table = pq.read_table(partition / name)
        rows.extend(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    return sorted(rows)


def column_types(partition: Path) -> list[tuple[str, str]]:
    """The Arrow schema readers see in the partition's first data file (names and types)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(partition / data_files(partition)[0])
    return [(field.name, str(field.type)) for field in schema]


def lake_listing(lake: Path) -> dict[str, tuple[int, float]]:
    """Every path under the lake (staging and trash included) with its size and mtime."""
    return {str(p.relative_to(lake)): (p.stat().st_size, p.stat().st_mtime) for p in lake.rglob("*")}


@pytest.fixture(scope="module")
def compacted(airflow_db, lake_env):
    """Run the DAG once on three closed days of 40 small files each; keep what the tests compare."""
    from airflow.sdk import DagRunState

    table = lake_env / TABLE
    before = {day: rows_of(table / f"event_date={day}") for day in DAYS}
    types_before = column_types(table / f"event_date={DAYS[0]}")
    dag = load_dag(DAG_ID)
    run = dag.test()
    assert run.state == DagRunState.SUCCESS, task_states(run)
    return dag, run, before, types_before


def test_scheduled_run_compacts_every_closed_day_into_one_file_with_the_same_rows(lake_env, compacted):
    _, run, before, types_before = compacted
    table = lake_env / TABLE
    for day in DAYS:
        partition = table / f"event_date={day}"
        assert len(data_files(partition)) == 1, day
        assert column_types(partition) == types_before, day
        assert rows_of(partition) == before[day], day
        marker = json.loads((partition / "_compaction.json").read_text())
        assert marker["files"] and len(marker["files"]) == 1
    states = task_states(run)
    assert states["rollback"] == "skipped" and states["all_batches_published"] == "success"
    assert states["report"] == "success" and states["cleanup"] == "success"
    mapped = [ti for ti in run.get_task_instances() if ti.task_id == "compact_batch.publish"]
    assert sorted(ti.map_index for ti in mapped) == [0, 1] and {ti.state for ti in mapped} == {"success"}


def test_run_figures_are_in_the_asset_event(compacted):
    extra = last_asset_event_extra("lake.compaction.events.orders")
    assert extra["partitions_published"] == len(DAYS) and extra["partitions_failed"] == 0
    assert extra["files_before"] == len(DAYS) * FILES_PER_DAY and extra["files_after"] == len(DAYS)
    assert extra["bytes_after"] < extra["bytes_before"]
    assert extra["rows"] == sum(len(rows) for rows in compacted[2].values())
    assert extra["verify_seconds"] > 0


def test_a_run_with_nothing_to_compact_emits_no_asset_event(compacted):
    dag = compacted[0]
    events = asset_event_count("lake.compaction.events.orders")
    run = dag.test()
    states = task_states(run)
    assert run.state == "success" and states["report"] == "success", states
    assert asset_event_count("lake.compaction.events.orders") == events


def test_dry_run_only_plans_and_changes_nothing(lake_env, compacted):
    dag = compacted[0]
    write_order_events(lake_env, dt.date.fromisoformat(LATE_DAY), days=1, files_per_day=FILES_PER_DAY, seed=7)
    age_files(lake_env / TABLE / f"event_date={LATE_DAY}", hours=3)
    listing = lake_listing(lake_env)
    run = dag.test(run_conf={"dry_run": True})
    states = task_states(run)
    assert run.state == "success", states
    assert states["plan"] == "success" and states["report"] == "skipped" and states["cleanup"] == "skipped"
    assert "compact_batch.rewrite" not in {t for t, s in states.items() if s == "success"}
    assert lake_listing(lake_env) == listing
    assert len(data_files(lake_env / TABLE / f"event_date={LATE_DAY}")) == FILES_PER_DAY


def test_rollback_run_restores_the_original_files_of_one_day(lake_env, compacted):
    dag, _, before, _ = compacted
    day = DAYS[0]
    partition = lake_env / TABLE / f"event_date={day}"
    run = dag.test(run_conf={"rollback": [f"{TABLE}/event_date={day}"]})
    states = task_states(run)
    assert run.state == "success", states
    assert states["rollback"] == "success" and states["plan"] == "skipped"
    assert states["report"] == "skipped" and states["cleanup"] == "skipped"
    assert data_files(partition) == [f"part-{i:05d}.parquet" for i in range(FILES_PER_DAY)]
    assert rows_of(partition) == before[day]
    assert len(data_files(lake_env / TABLE / f"event_date={DAYS[1]}")) == 1, "other days keep their compaction"


def test_a_failed_batch_fails_the_run_while_report_and_cleanup_still_run(airflow_db, lake_env, tmp_path, monkeypatch):
    events = asset_event_count("lake.compaction.events.orders")
    lake = tmp_path / "lake"
    write_order_events(lake, dt.date.fromisoformat(DAYS[0]), days=1, files_per_day=10)
    age_files(lake / TABLE, hours=3)
    partition = lake / TABLE / f"event_date={DAYS[0]}"
    rows = rows_of(partition)
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(lake))
    run = load_dag(BROKEN_DAG_ID).test()
    states = task_states(run)
    assert run.state == "failed", states
    assert states["compact_batch.rewrite"] == "failed" and states["compact_batch.publish"] == "upstream_failed"
    assert states["report"] == "success" and states["cleanup"] == "success"
    assert states["all_batches_published"] == "upstream_failed"
    assert asset_event_count("lake.compaction.events.orders") == events, "nothing was published: no event"
    assert len(data_files(partition)) == 10 and rows_of(partition) == rows
