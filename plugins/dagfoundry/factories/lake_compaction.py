"""Factory of the ``lake_compaction`` kind.

One run, in order (``max_active_runs`` is forced to 1)::

    choose_run ─┬─> plan ─> compact_batch[batch] ─┬─> report (Assets) ─> cleanup
                │           (mapped task group:   └─> all_batches_published
                │            rewrite >> publish)
                └─> rollback                          (when the ``rollback`` Param names partitions)

- ``plan`` recovers crashed runs, chooses partitions and stages one batch file per Spark
  application (none with ``dry_run``: the group then expands to zero);
- ``compact_batch`` is a mapped task group: each batch's ``publish`` runs as soon as its own
  ``rewrite`` ends, while other batches are still rewriting: DuckDB in the task's process
  (``engine: duckdb``, the default) or the provider's ``SparkSubmitOperator`` (``engine: spark``);
- ``report`` and ``cleanup`` run whatever happened to the batches (``all_done``): the report
  emits an Asset event, with the figures in its extra, for each table that had partitions
  published (none for a run that published nothing); ``first_date``/``last_date`` in the
  extra name the days of date partitions, so a feature view recomputes just those; the
  cleanup purges expired trash;
- ``all_batches_published`` does nothing; as the only leaf that needs every batch to succeed,
  it makes the run fail when one did (the ``all_done`` leaves alone would mark it a success).

The spec is validated at parse time; the engine's settings need the lake root, which is
resolved at run time, so tasks build them from the spec (in their closure).
"""

from __future__ import annotations

import fnmatch
import logging
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import task, task_group

from dagfoundry.assets import compaction_asset_name, emit_published, publishing_task_args
from dagfoundry.factories.dag_header import new_dag
from dagfoundry.registry import register_kind
from dagfoundry.spark_submit import application_path, submit_options
from dagfoundry.specs.lake_compaction import LakeCompactionSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from dagfoundry.compaction import CompactionSettings
    from dagfoundry.specs.loading import LoadedSpec

ALL_DONE = "all_done"
#: XCom key of the whole plan (the ``plan`` task returns only the batch files).
PLAN_XCOM_KEY = "plan"


@register_kind("lake_compaction", LakeCompactionSpec)
def build_lake_compaction(loaded: LoadedSpec) -> Any:
    """Build the compaction DAG of one spec."""
    spec: LakeCompactionSpec = loaded.spec  # type: ignore[assignment]
    assets = {table: compaction_asset_name(table) for table in spec.tables}
    with new_dag(loaded, outlets=list(assets.values())) as dag:
        choose = _choose_run()
        plan = _plan(spec)
        batches = _compact_batch(spec).expand(batch_file=plan)
        report = _report(spec, assets)
        choose >> [plan, _rollback(spec)]
        batches >> report >> _cleanup(spec)
        batches >> EmptyOperator(task_id="all_batches_published")
    return dag


def run_settings(spec: LakeCompactionSpec) -> CompactionSettings:
    """Return the job's engine settings for the lake root of this deployment (run time only)."""
    from dagfoundry.settings import lake_root

    return spec.compaction_settings(lake_root())


def _choose_run() -> Any:
    @task.branch(task_id="choose_run")
    def choose_run(params: dict | None = None) -> list[str]:
        return ["rollback"] if (params or {}).get("rollback") else ["plan"]

    return choose_run()


def _plan(spec: LakeCompactionSpec) -> Any:
    @task(task_id="plan")
    def plan(params: dict | None = None, run_id: str | None = None, ti: Any = None) -> list[str]:
        """Return the batch files to rewrite (mapped over); the whole plan goes to XCom key ``plan``."""
        from dagfoundry.compaction import new_version, plan_step

        version = new_version(run_id or "manual")
        planned = plan_step(run_settings(spec), version=version, dry_run=bool((params or {}).get("dry_run")))
        # Only a task's return value can be mapped over, so it is the batch list.
        ti.xcom_push(key=PLAN_XCOM_KEY, value=planned)
        return planned["batch_files"]

    return plan()


def _compact_batch(spec: LakeCompactionSpec) -> Any:
    spark = spec.spark

    @task_group(group_id="compact_batch")
    def compact_batch(batch_file: str) -> None:
        """Rewrite one batch of partitions (DuckDB in the task, or Spark), then verify and publish them."""
        rewrite: Any
        if spec.engine == "spark":
            rewrite = SparkSubmitOperator(
                task_id="rewrite",
                application=application_path("compaction_rewrite"),
                application_args=[batch_file],
                name=f"dagfoundry-compaction-{spec.name}",
                **submit_options(spark),
            )
        else:

            @task(task_id="rewrite", multiple_outputs=False)
            def rewrite_on_duckdb(batch_file: str) -> dict:
                """Rewrite the batch on the embedded engine, in this task's process."""
                from dagfoundry.compaction.duckdb_rewrite import rewrite_batch
                from dagfoundry.lake.duckdb_engine import DuckDBSettings

                result = rewrite_batch(batch_file, DuckDBSettings.from_dict(spec.duckdb.settings()))
                ok = sum(1 for p in result["partitions"] if p["ok"])
                log.info("engine duckdb rewrote %d of %d partitions of %s", ok, len(result["partitions"]), batch_file)
                return {"engine": "duckdb", "partitions": len(result["partitions"]), "ok": ok}

            rewrite = rewrite_on_duckdb(batch_file)

        @task(task_id="publish")
        def publish(batch_file: str) -> dict:
            from dagfoundry.compaction import publish_step

            return publish_step(batch_file)

        rewrite >> publish(batch_file)

    return compact_batch


def _report(spec: LakeCompactionSpec, assets: dict[str, str]) -> Any:
    @task(task_id="report", trigger_rule=ALL_DONE, **publishing_task_args(spec.name, list(assets.values())))
    def report(ti: Any = None, outlet_events: Any = None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from dagfoundry.compaction import report_step

        plan = ti.xcom_pull(task_ids="plan", key=PLAN_XCOM_KEY)
        if not plan:
            raise AirflowSkipException("no plan to report on (a rollback run, or the plan failed)")
        if plan["dry_run"]:
            raise AirflowSkipException("dry run: the plan is in the log of task 'plan'; nothing changed")
        result = report_step(run_settings(spec), version=plan["version"])
        for table, asset_name in assets.items():
            figures = {**summary_of_table(result, table, several=len(assets) > 1),
                       **published_date_range(result, table)}
            if figures["partitions_published"]:  # an event says "changed": none for a no-op run
                emit_published(outlet_events, spec.name, asset_name, figures)
        return result

    return report()


def summary_of_table(report: dict, table: str, *, several: bool) -> dict:
    """Return the run figures of the partitions under ``table`` (a table path or a pattern).

    :param report: what ``report_step`` returned
    :param several: whether the job has other tables (otherwise the run summary is the table's)
    """
    if not several:
        return report["summary"]
    from dagfoundry.compaction.metrics import run_summary

    mine = [
        p
        for p in report["partitions"]
        if fnmatch.fnmatchcase(p["key"], table) or fnmatch.fnmatchcase(p["key"], f"{table}/*")
    ]
    return run_summary(mine)


def published_date_range(report: dict, table: str) -> dict:
    """Return ``{"first_date", "last_date"}`` of the published partitions of ``table`` whose value is a date.

    Partitions such as ``event_date=2025-03-01`` name the days whose files changed, so a
    downstream feature view recomputes just the dates they affect. Empty when no published
    partition is a date (for example a table partitioned by region).

    :param report: what ``report_step`` returned
    :param table: a table path or a pattern, as in the spec
    """
    import datetime as dt

    days = []
    for partition in report["partitions"]:
        key = partition.get("key", "")
        inside = fnmatch.fnmatchcase(key, table) or fnmatch.fnmatchcase(key, f"{table}/*")
        if partition.get("status") != "published" or not inside:
            continue
        value = key.rsplit("/", 1)[-1].partition("=")[2]
        try:
            days.append(dt.date.fromisoformat(value).isoformat())
        except ValueError:
            continue
    return {"first_date": min(days), "last_date": max(days)} if days else {}


def _cleanup(spec: LakeCompactionSpec) -> Any:
    @task(task_id="cleanup", trigger_rule=ALL_DONE)
    def cleanup(params: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from dagfoundry.compaction import cleanup_step

        params = params or {}
        if params.get("rollback") or params.get("dry_run"):
            raise AirflowSkipException("rollback or dry run: the cleanup waits for a normal run")
        return cleanup_step(run_settings(spec))

    return cleanup()


def _rollback(spec: LakeCompactionSpec) -> Any:
    @task(task_id="rollback")
    def rollback(params: dict | None = None, run_id: str | None = None) -> list[dict]:
        from dagfoundry.compaction import new_version, rollback_step

        keys = [str(key) for key in (params or {}).get("rollback") or []]
        return rollback_step(run_settings(spec), keys, version=new_version(run_id or "manual"))

    return rollback()
