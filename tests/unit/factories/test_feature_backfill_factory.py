"""The feature_backfill factory: DAG shape, schedules with real data intervals, run date logic."""

from __future__ import annotations

import datetime as dt

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors
from dagfoundry.factories.feature_backfill import feature_dates_of_run

BASE = """\
kind: feature_backfill
name: user_features
schedule: "0 2 * * *"
entity_keys: [user_id]
sources:
  - {name: clicks, table: events/clicks, event_time: ts, partition_column: event_date, on_missing: skip}
features:
  - {name: clicks_7d, function: count, window_days: 7}
  - {name: spend_30d, function: sum, column: amount, window_days: 30, filter: "amount > 0"}
  - {name: spend_per_click, sql: "spend_30d / nullif(clicks_7d, 0)"}
"""


def test_dag_plans_computes_in_mapped_chunks_and_materializes(load):
    dag = build_dag(load(BASE))
    assert dag.task_ids == [
        "plan_feature_dates", "compute_features.prepare", "compute_features.duckdb", "compute_features.publish",
        "materialize_online",
    ]
    assert set(dag.get_task("materialize_online").upstream_task_ids) == {"compute_features.publish"}
    # each chunk pushes one summary, not one XCom per key (materialize_online pulls them all)
    assert dag.get_task("compute_features.publish").multiple_outputs is False
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert [a.name for a in dag.get_task("materialize_online").outlets] == [f"{dag.dag_id}.published"]
    assert [a.name for a in dag.get_task("materialize_online").inlets] == ["features.user_features"]
    assert dag.get_task("materialize_online").max_active_tis_per_dag == 1
    assert "`features.user_features`" in dag.doc_md
    assert set(dag.params) == {"start", "end", "chunk_days"}


def test_the_engine_decides_which_task_computes_a_chunk(load):
    """DuckDB in the task by default; ``engine: spark`` submits the same job through the provider."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    embedded = build_dag(load(BASE))
    assert "compute_features.duckdb" in embedded.task_ids and "compute_features.spark" not in embedded.task_ids
    assert embedded.get_task("compute_features.duckdb").multiple_outputs is False
    spark = build_dag(load(BASE + "engine: spark\n"))
    assert isinstance(spark.get_task("compute_features.spark"), SparkSubmitOperator)
    assert "compute_features.duckdb" not in spark.task_ids
    assert spark.get_task("compute_features.publish").upstream_task_ids == {"compute_features.spark", "compute_features.prepare"}


def test_a_waiting_source_adds_a_sensor(load):
    dag = build_dag(load(BASE.replace("on_missing: skip", "on_missing: wait")))
    assert dag.get_task("compute_features.prepare").upstream_task_ids == {"plan_feature_dates", "wait_for_sources"}


def test_runs_compute_the_right_feature_dates():
    interval_start = dt.datetime(2025, 3, 4, 2, tzinfo=dt.UTC)
    assert feature_dates_of_run({}, interval_start, None) == ("2025-03-04", "2025-03-04")
    assert feature_dates_of_run({}, None, dt.datetime(2025, 3, 5, 8, tzinfo=dt.UTC)) == ("2025-03-04", "2025-03-04")
    assert feature_dates_of_run({"start": "2025-01-01", "end": "2025-01-31"}, interval_start, None) == (
        "2025-01-01",
        "2025-01-31",
    )
    with pytest.raises(ValueError, match="needs both"):
        feature_dates_of_run({"start": "2025-01-01"}, None, None)
    with pytest.raises(ValueError, match="before start"):
        feature_dates_of_run({"start": "2025-02-01", "end": "2025-01-01"}, None, None)


@pytest.mark.parametrize(
    ("replace", "key", "message"),
    [
        ('schedule: "0 2 * * *"\n', "schedule", "need a schedule"),
        ("function: count, window_days: 7", "features[0].source", "'nowhere' is not a source of this view; sources: clicks"),
        ("table: events/clicks", "sources[0].table", "should match pattern"),
    ],
)
def test_spec_errors_point_at_the_key(load, replace, key, message):
    broken = {
        "schedule": BASE.replace(replace, ""),
        "features[0].source": BASE.replace(replace, "function: count, window_days: 7, source: nowhere"),
        "sources[0].table": BASE.replace(replace, "table: 'events/clicks; rm -rf'"),
    }[key]
    with pytest.raises(SpecErrors) as caught:
        load(broken)
    (error,) = caught.value.errors
    assert error.key == key and message in error.message, error.render()


def test_backfill_days_run_in_parallel(load):
    dag = build_dag(load(BASE + "max_active_runs: 4\n"))
    assert dag.max_active_runs == 4
    assert all(t.max_active_tis_per_dag is None for t in dag.tasks if t.task_id.startswith("compute_features."))


def test_the_readme_backfill_command_covers_the_days_it_states():
    """README's `airflow backfill create` over the example spec makes one run per stated feature date."""
    import datetime as dt
    import re
    from pathlib import Path

    from airflow.serialization.serialized_objects import DagSerialization

    from dagfoundry.specs.loading import SpecLoader

    root = Path(__file__).resolve().parents[3]
    readme = (root / "README.md").read_text()
    stated = re.search(r"The feature dates (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d):", readme)
    command = re.search(r"airflow backfill create --dag-id (\w+) --from-date (\S+) --to-date (\S+)", readme)
    assert stated and command, "README states a range and shows the command"
    configs = root / "dag_configs"
    loaded = SpecLoader(configs, environ={}).load_file(configs / "features" / "customer_order_features.yaml")
    assert loaded.spec.name == command.group(1)
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(build_dag(loaded)))
    bounds = [dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC) for d in command.group(2, 3)]
    runs = list(serialized.iter_dagrun_infos_between(*bounds))
    feature_dates = [r.data_interval.start.date() for r in runs]
    first, last = (dt.date.fromisoformat(d) for d in stated.groups())
    assert feature_dates == [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def test_chunk_summaries_accept_one_value_a_list_and_json_text():
    from dagfoundry.factories.feature_backfill import chunk_summaries

    summary = {"published": ["2025-03-01"], "view": "v"}
    assert chunk_summaries(None) == []
    assert chunk_summaries(summary) == [summary]
    assert chunk_summaries([summary, None, summary]) == [summary, summary]
    # as seen on a real scheduler with a PostgreSQL metadata database
    assert chunk_summaries('{"published": ["2025-03-01"], "view": "v"}') == [summary]
    assert chunk_summaries(['{"published": ["2025-03-01"], "view": "v"}']) == [summary]


def test_asset_triggered_run_recomputes_the_dates_its_changed_source_days_affect():
    run_after = dt.datetime(2025, 3, 20, 8, tzinfo=dt.UTC)
    # days 1..5 changed; a 30-day window carries the change up to the last complete day (19th)
    assert feature_dates_of_run({}, None, run_after, changed_days=("2025-03-01", "2025-03-05"),
                                longest_window_days=30) == ("2025-03-01", "2025-03-19")
    assert feature_dates_of_run({}, None, run_after, changed_days=("2025-03-01", "2025-03-05"),
                                longest_window_days=7) == ("2025-03-01", "2025-03-11")
    # explicit params win; changed days in the future of the run fall back to the last complete day
    assert feature_dates_of_run({"start": "2025-01-01", "end": "2025-01-02"}, None, run_after,
                                changed_days=("2025-03-01", "2025-03-05")) == ("2025-01-01", "2025-01-02")
    assert feature_dates_of_run({}, None, run_after, changed_days=("2025-04-01", "2025-04-02")) == (
        "2025-03-19", "2025-03-19")


def test_changed_days_come_from_the_triggering_events_extras():
    from types import SimpleNamespace

    from dagfoundry.factories.feature_backfill import changed_days_of

    events = {
        "lake.compaction.events.orders": [
            SimpleNamespace(extra={"first_date": "2025-03-02", "last_date": "2025-03-04", "files_before": 9}),
            SimpleNamespace(extra={"first_date": "2025-02-27", "last_date": "2025-03-01"}),
        ],
        "lake.mirror.shop.public.orders": [SimpleNamespace(extra={"rows": 3})],
    }
    assert changed_days_of(events) == ("2025-02-27", "2025-03-04")
    assert changed_days_of({"x": [SimpleNamespace(extra={"rows": 3})]}) is None
    assert changed_days_of(None) is None


def test_cron_or_assets_schedule_runs_on_either_and_keeps_data_intervals(load):
    spec = BASE.replace('schedule: "0 2 * * *"\n', "schedule: {cron: '0 2 * * *', assets: [lake.compaction.events.clicks]}\n")
    loaded = load(spec)
    assert loaded.spec.is_time_scheduled and loaded.spec.schedule_assets == ("lake.compaction.events.clicks",)
    dag = build_dag(loaded)
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert type(dag.timetable.timetable).__name__ == "CronDataIntervalTimetable"  # backfills keep working
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["lake.compaction.events.clicks"]
    assert "`0 2 * * *`, or on Assets: `lake.compaction.events.clicks`" in dag.doc_md


def test_cron_or_assets_schedule_says_what_is_wrong(load):
    with pytest.raises(SpecErrors) as caught:
        load(BASE.replace('schedule: "0 2 * * *"\n', "schedule: {cron: '0 25 * * *', assets: [x.y]}\n"))
    (error,) = caught.value.errors
    assert error.key == "schedule" and "hour" in error.message, error.render()
    with pytest.raises(SpecErrors) as caught:
        load(BASE.replace('schedule: "0 2 * * *"\n', "schedule: {cron: '0 2 * * *'}\n"))
    assert "{cron: ..., assets: [...]}" in caught.value.errors[0].message
