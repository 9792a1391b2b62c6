"""The lake_compaction factory's DAG shape, and spec errors located at their key, from YAML as users write it."""

from __future__ import annotations

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors
from dagfoundry.factories.lake_compaction import summary_of_table

BASE = """\
kind: lake_compaction
name: events_compaction
schedule: "30 * * * *"
tables:
  - events/orders
"""


def test_dag_plans_rewrites_and_publishes_each_batch_then_reports_and_cleans_up(load, upstream):
    dag = build_dag(load(BASE))
    assert sorted(dag.task_ids) == sorted(
        [
            "choose_run",
            "plan",
            "compact_batch.rewrite",
            "compact_batch.publish",
            "report",
            "cleanup",
            "all_batches_published",
            "rollback",
        ]
    )
    assert upstream(dag, "plan") == {"choose_run"} and upstream(dag, "rollback") == {"choose_run"}
    assert upstream(dag, "compact_batch.rewrite") == {"plan"}
    assert upstream(dag, "compact_batch.publish") == {"compact_batch.rewrite", "plan"}
    assert upstream(dag, "report") == {"compact_batch.publish"}
    assert upstream(dag, "cleanup") == {"report"}
    assert upstream(dag, "all_batches_published") == {"compact_batch.publish"}
    assert dag.get_task("report").trigger_rule == "all_done" and dag.get_task("cleanup").trigger_rule == "all_done"
    assert dag.get_task("all_batches_published").trigger_rule == "all_success"
    assert [a.name for a in dag.get_task("report").outlets] == ["events_compaction.published"]
    assert [a.name for a in dag.get_task("report").inlets] == ["lake.compaction.events.orders"]
    assert dag.get_task("report").max_active_tis_per_dag == 1
    assert "`lake.compaction.events.orders`" in dag.doc_md
    assert dag.params["dry_run"] is False and dag.params["rollback"] == []
    assert dag.max_active_runs == 1 and type(dag.timetable).__name__ == "CronTriggerTimetable"


def test_rewrite_runs_in_the_task_on_the_embedded_engine_by_default(load):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    rewrite = build_dag(load(BASE)).get_task("compact_batch.rewrite")
    assert not isinstance(rewrite, SparkSubmitOperator) and rewrite.multiple_outputs is False


def test_orc_tables_need_the_spark_engine(load):
    from dagfoundry.errors import SpecErrors

    with pytest.raises(SpecErrors, match="writes Parquet only: set engine: spark"):
        load(BASE + "output_format: orc\ncompression: zlib\n")
    assert load(BASE + "output_format: orc\ncompression: zlib\nengine: spark\n").spec.engine == "spark"


def test_rewrite_is_a_spark_submit_of_the_compaction_app_with_the_spec_settings(load):
    text = BASE + (
        "engine: spark\nspark:\n  conn_id: spark_cluster\n  driver_memory: 2g\n  executor_memory: 4g\n"
        "  conf: {spark.sql.shuffle.partitions: '64'}\n"
    )
    dag = build_dag(load(text))
    rewrite = dag.get_task("compact_batch.rewrite")
    assert type(rewrite).__name__ == "SparkSubmitOperator"
    assert rewrite.application.endswith("include/spark/compaction_rewrite.py")
    assert rewrite._conn_id == "spark_cluster"
    assert rewrite._driver_memory == "2g" and rewrite._executor_memory == "4g"
    assert rewrite.conf["spark.sql.shuffle.partitions"] == "64" and rewrite.conf["spark.ui.enabled"] == "false"


def test_spec_becomes_the_engine_settings(tmp_path, load):
    text = BASE + (
        "target_file_size: 64MB\nclosed_after: 2h\nretention: 1d\nsort_columns: [customer_id]\n"
        "output_format: orc\ncompression: zlib\nengine: spark\nspark: {max_partitions_per_batch: 4, max_bytes_per_batch: 1GB}\n"
    )
    settings = load(text).spec.compaction_settings(tmp_path)
    assert settings.lake_root == tmp_path and settings.tables == ("events/orders",)
    assert settings.target_file_bytes == 64 * 1024 * 1024 and settings.closed_after_seconds == 7200
    assert settings.retention_seconds == 86400 and settings.sort_columns == ("customer_id",)
    assert (settings.output_format, settings.compression) == ("orc", "zlib")
    assert (settings.max_partitions_per_batch, settings.max_bytes_per_batch) == (4, 1024**3)


def test_one_asset_per_table_each_with_its_own_figures(load):
    loaded = load(BASE + "  - mirror/shop/*\n")
    assert loaded.spec.produced_assets() == ["lake.compaction.events.orders", "lake.compaction.mirror.shop.:any"]
    figures = {
        "status": "published",
        "files_before": 10,
        "bytes_before": 100,
        "files_after": 1,
        "bytes_after": 90,
        "files_ideal": 1,
        "rewrite_seconds": 1.0,
        "publish_seconds": 0.1,
    }
    report = {
        "summary": {},
        "partitions": [
            {"key": "events/orders/event_date=2024-01-01", **figures},
            {"key": "mirror/shop/customers/dt=2024-01-01", **figures},
            {"key": "mirror/shop/orders/dt=2024-01-01", **figures},
        ],
    }
    assert summary_of_table(report, "events/orders", several=True)["partitions_published"] == 1
    assert summary_of_table(report, "mirror/shop/*", several=True)["files_before"] == 20


LAST_LINE = BASE.count("\n") + 1


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [
        ("target_file_size: 512KB\n", LAST_LINE, "target_file_size", "at least 1MB"),
        ("target_file_size: 12 parsecs\n", LAST_LINE, "target_file_size", "'128MB'"),
        ("max_active_runs: 2\n", LAST_LINE, "max_active_runs", "must be 1"),
        ("  - ../secrets\n", LAST_LINE, "tables[1]", "without '..'"),
        ("  - /abs/events\n", LAST_LINE, "tables[1]", "relative path"),
        ("  - _staging/x\n", LAST_LINE, "tables[1]", "reserved"),
        ("  - events/orders\n", LAST_LINE, "tables[1]", "listed twice"),
        ("compression: zlib\n", LAST_LINE, "compression", "cannot be written as parquet"),
        ("min_small_files: 1\n", LAST_LINE, "min_small_files", "greater than or equal to 2"),
        ("spark: {conf: {executor.cores: '2'}}\n", LAST_LINE, "spark.conf", "spark."),
        ("spark: {driver_memory: lots}\n", LAST_LINE, "spark.driver_memory", "'2g'"),
        ("params: {rollback: events/orders/event_date=2024-01-01}\n", LAST_LINE, "params", "expected array"),
    ],
)
def test_spec_errors_point_at_the_key(load, extra, line, key, message):
    with pytest.raises(SpecErrors) as caught:
        load(BASE + extra)
    (error,) = caught.value.errors
    assert (error.line, error.key) == (line, key) and message in error.message, error


def test_compaction_event_names_the_days_of_the_published_date_partitions():
    from dagfoundry.factories.lake_compaction import published_date_range

    report = {
        "partitions": [
            {"key": "events/orders/event_date=2024-01-03", "status": "published"},
            {"key": "events/orders/event_date=2024-01-01", "status": "published"},
            {"key": "events/orders/event_date=2023-12-01", "status": "failed"},
            {"key": "events/clicks/event_date=2023-11-01", "status": "published"},
            {"key": "mirror/shop/customers/region=north", "status": "published"},
        ],
    }
    assert published_date_range(report, "events/orders") == {"first_date": "2024-01-01", "last_date": "2024-01-03"}
    assert published_date_range(report, "mirror/shop/*") == {}
