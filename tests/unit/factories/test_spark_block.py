"""Every kind runs Spark through the provider's SparkSubmitOperator, configured by the same `spark:` block."""

from __future__ import annotations

import pytest
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors

SPARK = "spark:\n  conn_id: spark_cluster\n  driver_memory: 2g\n  executor_memory: 4g\n  conf: {spark.sql.shuffle.partitions: '64'}\n"
SPECS = {
    "compact_batch.rewrite": "kind: lake_compaction\nname: events_compaction\ntables: [events/orders]\nengine: spark\n",
    "spark_mirror": "kind: cdc_ingestion\nname: orders_cdc\nsource: {name: shop, conn_id: shop_pg}\n"
    "tables: [{name: public.orders}]\nengine: spark\n",
    "compute_features.spark": 'kind: feature_backfill\nname: user_features\nschedule: "0 2 * * *"\n'
    "entity_keys: [user_id]\nsources: [{name: events, table: events/clicks, event_time: ts}]\n"
    "features: [{name: clicks_7d, function: count, window_days: 7}]\nengine: spark\n",
}


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_the_spark_block_configures_the_submit_operator_of_every_kind(load, task_id):
    submit = build_dag(load(SPECS[task_id] + SPARK)).get_task(task_id)
    assert isinstance(submit, SparkSubmitOperator)
    assert submit._conn_id == "spark_cluster"
    assert (submit._driver_memory, submit._executor_memory) == ("2g", "4g")
    assert submit.conf["spark.sql.shuffle.partitions"] == "64" and submit.conf["spark.ui.enabled"] == "false"


@pytest.mark.parametrize("task_id", ["spark_mirror", "compute_features.spark"])
def test_the_old_spark_conn_id_is_a_located_error_with_the_fix(load, task_id):
    text = SPECS[task_id] + "spark_conn_id: spark_cluster\n"
    with pytest.raises(SpecErrors) as caught:
        load(text)
    (error,) = caught.value.errors
    assert error.key == "spark_conn_id" and error.line == text.count("\n")
    assert "spark: {conn_id: spark_cluster}" in error.message
