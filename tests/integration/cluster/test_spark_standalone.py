"""The same specs on a Spark standalone cluster: only the Spark connection changes.

A master and a worker started from the installed pyspark (the session's ``spark_cluster``)
run the compaction and the feature jobs of two example-style specs. The specs name no
connection, so they use the default ``spark_local``; the cluster run only points that
connection at ``spark://127.0.0.1:<port>``. Both modes start from the same lake and must end
with the same compacted rows and byte-identical feature partitions.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from include.demo.order_events import TABLE, write_order_events

pytestmark = pytest.mark.integration

FIRST_DAY = dt.date(2025, 3, 1)
DAYS = 3
COMPACTION_DAG = "cl_compaction"
FEATURE_DAG = "cl_features"
LOCAL_CONNECTION = '{"conn_type": "spark", "host": "local[2]"}'
SPECS = {
    COMPACTION_DAG: f"""\
kind: lake_compaction
name: {COMPACTION_DAG}
schedule: "30 * * * *"
retries: 0
tables: [{TABLE}]
target_file_size: 1MB
closed_after: 1h
sort_columns: [customer_id]
""",
    FEATURE_DAG: f"""\
kind: feature_backfill
name: {FEATURE_DAG}
schedule: "0 2 * * *"
start_date: {FIRST_DAY.isoformat()}
retries: 0
entity_keys: [customer_id]
sources:
  - {{name: orders, table: {TABLE}, event_time: ordered_at, partition_column: event_date, on_missing: skip}}
features:
  - {{name: orders_1d, function: count, window_days: 1}}
  - {{name: amount_sum_3d, function: sum, column: amount, window_days: 3}}
  - {{name: last_status, function: last, column: status, window_days: 3}}
ttl_days: 7
""",
}
FEATURE_RUN = {"start": (FIRST_DAY + dt.timedelta(days=1)).isoformat(),
               "end": (FIRST_DAY + dt.timedelta(days=DAYS - 1)).isoformat(), "chunk_days": 3}


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))


def _rows(folder: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    rows: list[tuple] = []
    for path in _data_files(folder):
        table = pq.read_table(path)
        rows.extend(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    return sorted(rows, key=repr)


def _run_both_dags(root: Path, connection: str) -> dict:
    """Write the lake and the specs under ``root``, run both DAGs on ``connection``, return outputs."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DagRunState

    configs, lake = root / "configs", root / "lake"
    configs.mkdir(parents=True)
    for name, text in SPECS.items():
        (configs / f"{name}.yaml").write_text(text)
    # The deployment's switch to Spark: configuration, not the specs (the embedded engine is the default).
    (configs / "defaults.yaml").write_text("kinds:\n  feature_backfill: {engine: spark}\n  lake_compaction: {engine: spark}\n")
    write_order_events(lake, FIRST_DAY, DAYS, events_per_day=100, files_per_day=8, customers=25)
    aged = dt.datetime.now().timestamp() - 3 * 3600  # written hours ago: every day is closed
    for path in [lake / TABLE, *(lake / TABLE).rglob("*")]:
        os.utime(path, (aged, aged))
    before = {p.name: _rows(p) for p in sorted((lake / TABLE).iterdir())}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_SPARK_LOCAL", connection)
        patch.setenv("DAGFOUNDRY_LAKE_ROOT", str(lake))
        patch.setenv("DAGFOUNDRY_CONFIG_DIR", str(configs))
        bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
        assert not bag.import_errors, bag.import_errors
        compaction = bag.dags[COMPACTION_DAG].test()
        assert compaction.state == DagRunState.SUCCESS, {ti.task_id: ti.state for ti in compaction.get_task_instances()}
        features = bag.dags[FEATURE_DAG].test(run_conf=FEATURE_RUN)
        assert features.state == DagRunState.SUCCESS, {ti.task_id: ti.state for ti in features.get_task_instances()}
    offline = lake / "features" / FEATURE_DAG
    return {
        "before": before,
        "files": {p.name: len(_data_files(p)) for p in sorted((lake / TABLE).iterdir())},
        "rows": {p.name: _rows(p) for p in sorted((lake / TABLE).iterdir())},
        "features": {p.name: [f.read_bytes() for f in _data_files(p)] for p in sorted(offline.glob("feature_date=*"))},
    }


@pytest.fixture(scope="module")
def outputs(airflow_db, spark_cluster, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("spark-modes")
    return {
        "local": _run_both_dags(root / "local", LOCAL_CONNECTION),
        "cluster": _run_both_dags(root / "cluster", spark_cluster.connection()),
        "applications": spark_cluster.completed_applications(),
    }


def test_jobs_ran_on_the_standalone_cluster(outputs):
    applications = outputs["applications"]
    assert "dagfoundry-compaction-rewrite" in applications, applications
    assert f"dagfoundry-features-{FEATURE_DAG}" in applications, applications


def test_compaction_on_the_cluster_equals_local_mode(outputs):
    local, cluster = outputs["local"], outputs["cluster"]
    assert cluster["files"] == local["files"] == {name: 1 for name in local["before"]}
    assert cluster["rows"] == local["rows"] == local["before"]
    assert cluster["before"] == local["before"]


def test_feature_partitions_on_the_cluster_are_byte_identical_to_local_mode(outputs):
    local, cluster = outputs["local"]["features"], outputs["cluster"]["features"]
    days = [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(1, DAYS)]
    assert sorted(local) == [f"feature_date={day}" for day in days]
    assert cluster == local
