"""Asset events mean "published": only for what a run changed, with its figures; names every spec can schedule on.

The publishing tasks run here with Airflow's own outlet-event accessor, as the task runner
gives it to them; what they add through the DAG's alias is what Airflow records as events.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors

from dagfoundry.dag_files import build_dag
from dagfoundry.specs.loading import SpecLoader

CDC = """\
kind: cdc_ingestion
name: orders_cdc
source: {name: shop, conn_id: shop_pg}
tables:
  - name: public.orders
  - name: public.customers
"""


def emitted(events: OutletEventAccessors) -> dict[str, dict]:
    """Return the events the task added through any alias: Asset name -> extra."""
    return {e.dest_asset_key.name: e.extra for accessor in events._dict.values() for e in accessor.asset_alias_events}


def test_a_one_table_mirror_publish_emits_only_that_tables_event(load, monkeypatch):
    import dagfoundry.cdc.tasks

    dag = build_dag(load(CDC))
    published = {"tables": {"public.orders": {"last_batch_id": 7, "row_count": 120, "batches_applied": 1,
                                              "unavailable_values": {"body": 2}}}}
    monkeypatch.setattr(dagfoundry.cdc.tasks, "publish_mirror", lambda plan: published)
    events = OutletEventAccessors()
    dag.get_task("publish_mirror").python_callable("plan.json", {"slot": {"retained_wal_bytes": 4096}}, events)
    assert emitted(events) == {
        "lake.mirror.shop.public.orders": {"last_batch_id": 7, "row_count": 120, "batches_applied": 1,
                                           "slot_retained_wal_bytes": 4096, "unavailable_values": 2}
    }


def test_a_compaction_that_published_nothing_emits_nothing(load, monkeypatch, tmp_path):
    import dagfoundry.compaction

    spec = "kind: lake_compaction\nname: events_compaction\ntables: [events/orders, mirror/shop/*]\n"
    dag = build_dag(load(spec))
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(tmp_path))
    partition = {"key": "mirror/shop/public.orders/dt=2024-01-01", "status": "published", "files_before": 9,
                 "bytes_before": 900, "files_after": 1, "bytes_after": 850, "files_ideal": 1, "rows": 10,
                 "rewrite_seconds": 1.0, "publish_seconds": 0.1}
    report = {"summary": {}, "partitions": [partition]}
    monkeypatch.setattr(dagfoundry.compaction, "report_step", lambda settings, version: report)

    class TaskInstance:
        @staticmethod
        def xcom_pull(task_ids: str, key: str) -> dict:
            return {"dry_run": False, "version": "v1"}

    events = OutletEventAccessors()
    dag.get_task("report").python_callable(ti=TaskInstance(), outlet_events=events)
    assert list(emitted(events)) == ["lake.compaction.mirror.shop.:any"], "events/orders changed nothing"
    assert emitted(events)["lake.compaction.mirror.shop.:any"]["files_before"] == 9

    report["partitions"] = []
    events = OutletEventAccessors()
    dag.get_task("report").python_callable(ti=TaskInstance(), outlet_events=events)
    assert emitted(events) == {}


def test_a_spec_can_schedule_on_the_asset_of_a_glob_table(tmp_path: Path):
    (tmp_path / "compaction.yaml").write_text(
        "kind: lake_compaction\nname: mirror_compaction\ntables: ['mirror/shop/public.order_*']\n"
    )
    (tmp_path / "retrain.yaml").write_text(
        "kind: lake_compaction\nname: downstream\nschedule: ['lake.compaction.mirror.shop.public.order_:any']\n"
        "tables: [events/orders]\n"
    )
    result = SpecLoader(tmp_path, environ={}).load_all(sorted(tmp_path.glob("*.yaml")))
    assert not result.errors, result.errors
    dags = {d.dag_id: d for d in map(build_dag, result.specs)}
    assert [a.name for a in dags["downstream"].timetable.asset_condition.objects] == [
        "lake.compaction.mirror.shop.public.order_:any"
    ]


@pytest.mark.parametrize("name", ["lake.compaction.mirror.shop.:any", "lake.compaction.mirror.shop.public.order_:any"])
def test_glob_asset_names_are_valid_airflow_assets(name):
    from airflow.sdk import Asset

    assert Asset(name).name == name
