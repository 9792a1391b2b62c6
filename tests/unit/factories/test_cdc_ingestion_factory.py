"""The cdc_ingestion factory's DAG shape for each mode, built from YAML as users write it."""

from __future__ import annotations

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors

BASE = """\
kind: cdc_ingestion
name: orders_cdc
source: {name: shop, conn_id: shop_pg}
tables:
  - name: public.orders
    primary_key: [order_id]
"""


def test_embedded_mode_captures_checks_mirrors_and_publishes_assets(load, upstream):
    dag = build_dag(load(BASE))
    assert upstream(dag, "capture") == {"choose_action", "request_resnapshot", "reset_offsets"}
    assert upstream(dag, "check_quality") == {"capture"}
    assert upstream(dag, "duckdb_mirror") == {"plan_mirror"}, "engine: duckdb is the default"
    assert "spark_mirror" not in dag.task_ids
    publish = dag.get_task("publish_mirror")
    assert [a.name for a in publish.outlets] == ["orders_cdc.published"], "events go through the alias"
    # declared up front, so two runs never race to create an Asset on its first event
    assert [a.name for a in publish.inlets] == ["lake.mirror.shop.public.orders"]
    assert publish.max_active_tis_per_dag == 1, "runs publish one at a time (the alias-Asset link races in Airflow 3.3)"
    assert "`lake.mirror.shop.public.orders`" in dag.doc_md
    assert dag.get_task("capture").trigger_rule == "none_failed_min_one_success"
    assert dag.params["action"] == "capture" and dag.max_active_runs == 1


def test_engine_spark_mirrors_through_the_submit_operator(load, upstream):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    dag = build_dag(load(BASE + "engine: spark\n"))
    assert isinstance(dag.get_task("spark_mirror"), SparkSubmitOperator)
    assert upstream(dag, "spark_mirror") == {"plan_mirror"} and upstream(dag, "publish_mirror") >= {"spark_mirror"}
    assert "duckdb_mirror" not in dag.task_ids


def test_drop_slot_ends_the_run_and_health_is_checked_last(load, upstream):
    dag = build_dag(load(BASE))
    assert upstream(dag, "drop_slot") == {"choose_action"}
    assert not dag.get_task("drop_slot").downstream_task_ids, "nothing may capture (and recreate the slot) after drop_slot"
    # check_quality: a table failing its checks is named there and fails the run at its end
    assert upstream(dag, "capture_health") == {"capture", "check_quality", "publish_mirror"}
    assert dag.get_task("capture_health").trigger_rule == "none_failed"
    assert "drop_slot" in dag.params.get_param("action").schema["enum"]


def test_slot_thresholds_must_be_ordered(load):
    with pytest.raises(SpecErrors, match="slot_wal_warn.*above slot_wal_fail"):
        load(BASE + "capture: {slot_wal_warn: 2GB, slot_wal_fail: 1GB}\n")


def test_connect_mode_deploys_waits_and_picks_up_sink_files(load, upstream):
    text = BASE + "mode: connect\nconnect:\n  conn_id: connect_cluster\n  sink_dir: /data/sink/shop\n"
    dag = build_dag(load(text))
    assert "capture" not in dag.task_ids
    assert upstream(dag, "connector_running") == {"deploy_connector"}
    # the deploy's table decisions (tables without a replica identity left out) reach the summary
    assert upstream(dag, "pickup_sink_files") == {"connector_running", "deploy_connector"}
    assert dag.get_task("deploy_connector").capture_config.publication == "dagfoundry_orders_cdc"
    assert upstream(dag, "deploy_connector") >= {"choose_action", "restart_connector"}
    config = dag.get_task("deploy_connector").config
    assert config["slot.name"] == "dagfoundry_orders_cdc" and config["plugin.name"] == "pgoutput"
    assert config["publication.autocreate.mode"] == "disabled", "the deploy manages the publication"
    assert not any(key.startswith("database.password") for key in config), "secrets are filled in at run time"


def test_snowflake_target_adds_one_merge_per_table(load, upstream):
    text = BASE + "snowflake:\n  conn_id: sf\n  target_schema: RAW.SHOP\n  delete_mode: soft\n"
    dag = build_dag(load(text))
    merge = dag.get_task("merge_public_orders_into_snowflake")
    assert merge.target_table == "RAW.SHOP.ORDERS" and merge.delete_mode == "soft"
    assert upstream(dag, "merge_public_orders_into_snowflake") == {"check_quality"}


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("mode: connect\n", "mode", "needs a 'connect' section"),
        ("max_active_runs: 2\n", "max_active_runs", "must be 1"),
        ("connect: {sink_dir: /x}\n", "connect", "only used with mode: connect"),
    ],
)
def test_mode_rules_point_at_the_key(load, extra, key, message):
    with pytest.raises(SpecErrors) as caught:
        load(BASE + extra)
    (error,) = caught.value.errors
    assert error.key == key and message in error.message and error.line == BASE.count("\n") + 1


def test_table_without_schema_is_located(load):
    with pytest.raises(SpecErrors) as caught:
        load(BASE.replace("public.orders", "orders"))
    (error,) = caught.value.errors
    assert (error.line, error.key) == (5, "tables[0].name") and "schema.table" in error.message
