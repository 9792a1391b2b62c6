"""The feature_backfill kind end to end through Airflow: chunked backfill vs a scheduled daily run.

Real Spark (through the apache-spark provider), real SQLite online store, DAG runs with
``dag.test()``: the chunked backfill and the daily run give byte-identical partitions, and
the daily run of an older date never overwrites newer online values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

SPEC = """\
kind: feature_backfill
name: shop_features_e2e
schedule: "0 2 * * *"
entity_keys: [customer_id]
sources:
  - {name: orders, table: events/orders, event_time: ordered_at, partition_column: event_date, on_missing: skip}
features:
  - {name: orders_1d, function: count, window_days: 1}
  - {name: amount_sum_7d, function: sum, column: amount, window_days: 7}
  - {name: last_status, function: last, column: status, window_days: 7}
  - {name: orders_7d_all, function: count, window_days: 7}
  - {name: avg_amount_7d, sql: "amount_sum_7d / nullif(orders_7d_all, 0)"}
ttl_days: 7
"""
FIRST_DAY = dt.date(2025, 3, 1)


@pytest.fixture(scope="module")
def feature_env(tmp_path_factory):
    from include.demo.order_events import write_order_events

    root = tmp_path_factory.mktemp("feature_dag")
    (root / "configs").mkdir()
    (root / "configs" / "features.yaml").write_text(SPEC)
    write_order_events(root / "lake", FIRST_DAY, 12, events_per_day=120, files_per_day=3, customers=40)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(root / "lake"))
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(root / "configs"))
    yield root
    monkeypatch.undo()


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["shop_features_e2e"]


def partition_bytes(lake: Path, day: str) -> bytes:
    files = sorted((lake / "features" / "shop_features_e2e" / f"feature_date={day}").glob("*.parquet"))
    assert len(files) == 1, files
    return files[0].read_bytes()


@pytest.mark.integration
def test_chunked_backfill_and_daily_run_agree_and_online_keeps_the_newest(airflow_db, feature_env):
    from airflow.sdk import DagRunState

    from dagfoundry.features.online_store import SqliteOnlineStore, get_online_features

    lake = feature_env / "lake"
    dag = load_dag()
    backfill = dag.test(run_conf={"start": "2025-03-05", "end": "2025-03-10", "chunk_days": 3})
    assert backfill.state == DagRunState.SUCCESS
    chunks = backfill.get_task_instance("plan_feature_dates").xcom_pull(task_ids="plan_feature_dates")
    assert chunks == [{"start": "2025-03-05", "end": "2025-03-07"}, {"start": "2025-03-08", "end": "2025-03-10"}]
    chunked = {f"2025-03-{d:02d}": partition_bytes(lake, f"2025-03-{d:02d}") for d in range(5, 11)}

    store = SqliteOnlineStore(str(lake / "online" / "features.sqlite"))
    keys = [{"customer_id": c} for c in range(1, 41)]
    served_at = dt.datetime(2025, 3, 11, 9, tzinfo=dt.UTC)  # values expire ttl_days after their date
    before = get_online_features("shop_features_e2e", keys, store=store, now=served_at)
    assert {row["feature_date"] for row in before if row} == {"2025-03-10"}

    # A fresh parse, as a scheduler-created run would get (dag.test keeps the previous conf in params).
    daily = load_dag().test(logical_date=dt.datetime(2025, 3, 8, 2, tzinfo=dt.UTC))
    assert daily.state == DagRunState.SUCCESS
    planned = daily.get_task_instance("plan_feature_dates").xcom_pull(task_ids="plan_feature_dates")
    assert len(planned) == 1, planned
    (day_chunk,) = planned
    assert day_chunk["start"] == day_chunk["end"]
    day = day_chunk["start"]
    assert day in chunked, day
    assert partition_bytes(lake, day) == chunked[day], "daily and chunked runs must give identical partitions"
    after = get_online_features("shop_features_e2e", keys, store=store, now=served_at)
    assert after == before, "a daily run of an older date must not overwrite newer online values"
    online = daily.get_task_instance("materialize_online").xcom_pull(task_ids="materialize_online")["online"]
    assert online["written"] == 0 and "holds 2025-03-10" in online["skipped"], "the older day's run left the store alone"
    assert store.materialized_date("shop_features_e2e") == "2025-03-10"
