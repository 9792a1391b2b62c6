"""Factory of the ``cdc_ingestion`` kind.

One run, in order (``max_active_runs`` is forced to 1: two captures of a source never overlap)::

    choose_action ─┬─> request_resnapshot ─┐
                   ├─> reset_offsets ──────┤   (only with a snapshot mode that snapshots again)
                   ├─> restart_connector ──┤   (connect mode)
                   ├─> [stop_connector >>] drop_slot (decommission; nothing follows)
                   └───────────────────────┴─> [deploy_connector >> connector_running] (connect mode)

The form offers only the actions of the spec's mode (``CdcIngestionSpec.actions``). In connect
mode the actions go to Kafka Connect's REST API: ``reset_offsets`` stops the connector, deletes
its offsets and resumes it, so Debezium takes a new snapshot there (the embedded offsets and
the mirror floor are not touched); ``request_resnapshot`` checks the connector and signals.
Errors a retry cannot fix (a table not captured, no signal table) fail the task at once.
                                               >> capture | pickup_sink_files
                                               >> check_quality
                                               >> plan_mirror >> duckdb_mirror | spark_mirror >> publish_mirror (Assets)
                                               >> merge_<table> into Snowflake (optional, per table)
                                               >> capture_health (fails on skipped tables, tables failing
                                                  their quality checks, slot WAL; warns on unknown TOAST values)

The mirror job runs on the spec's ``engine``: ``duckdb_mirror`` runs the plan's queries in the
task's process (``engine: duckdb``, the default, bounded by the ``duckdb:`` block),
``spark_mirror`` is the provider's ``SparkSubmitOperator`` with the ``spark:`` block
(``engine: spark``); both stage the same output, which ``publish_mirror`` verifies and
publishes, naming the engine in its summary, log and Asset events.

Configuration is turned into the engine's frozen dataclasses at parse time (pure Python);
connections, the lake root and every heavy import are resolved inside the tasks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import task

from dagfoundry.assets import emit_published, mirror_asset_name, publishing_task_args
from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable
from dagfoundry.factories.dag_header import new_dag
from dagfoundry.registry import register_kind
from dagfoundry.spark_submit import application_path, submit_options
from dagfoundry.specs.cdc_ingestion import CdcIngestionSpec

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

NONE_FAILED = "none_failed_min_one_success"
log = logging.getLogger(__name__)


def capture_config_of(spec: CdcIngestionSpec) -> CaptureConfig:
    """Translate the spec into the capture engine's configuration (no secrets in it)."""
    tables = []
    for table in spec.tables:
        schema, name = table.name.split(".")
        tables.append(CapturedTable(schema=schema, table=name, primary_key=table.primary_key))
    capture = spec.capture
    return CaptureConfig(
        source=spec.source.name,
        conn_id=spec.source.conn_id,
        tables=tuple(tables),
        database=spec.source.database,
        # Slots are global to the PostgreSQL server: name them after the (unique) DAG by default.
        slot_name=capture.slot_name or f"dagfoundry_{spec.name}",
        publication_name=capture.publication_name or f"dagfoundry_{spec.name}",
        signal_table=capture.signal_table,
        heartbeat_interval_ms=int(capture.heartbeat.total_seconds() * 1000),
        snapshot_mode=capture.snapshot_mode,
        replica_identity_full=capture.replica_identity_full,
    )


@register_kind("cdc_ingestion", CdcIngestionSpec)
def build_cdc_ingestion(loaded: LoadedSpec) -> Any:
    """Build the CDC DAG of one spec."""
    spec: CdcIngestionSpec = loaded.spec  # type: ignore[assignment]
    config = capture_config_of(spec)
    config.validate()
    table_ids = [t.table_id for t in config.tables]
    with new_dag(loaded, outlets=[mirror_asset_name(config.source, t) for t in table_ids]) as dag:
        choose = _choose_action(spec)
        pre_steps = _action_tasks(spec, config)
        ingest_head, ingest_tail = _ingest_tasks(spec, config)
        for name, step in pre_steps.items():
            choose >> step
            if name != "drop_slot":
                step >> ingest_head
        choose >> ingest_head
        quality = _check_quality(spec, config.source, ingest_tail)
        plan = _plan_mirror(config.source, table_ids, spec.max_rows_per_batch)
        mirror = _run_mirror(spec, plan)
        publish = _publish_mirror(spec.name, config.source, table_ids, plan, ingest_tail)
        quality >> plan >> mirror >> publish
        health = _capture_health(ingest_tail, quality, publish)
        if spec.snowflake is not None:
            for merge in _snowflake_merges(spec, config, quality):
                merge >> health
    return dag


def _choose_action(spec: CdcIngestionSpec) -> Any:
    actions = spec.actions
    first = "deploy_connector" if spec.mode == "connect" else "capture"
    steps = {"resnapshot": "request_resnapshot", "reset_offsets": "reset_offsets", "restart_connector": "restart_connector",
             "drop_slot": "stop_connector" if spec.mode == "connect" else "drop_slot"}

    @task.branch(task_id="choose_action")
    def choose_action(params: dict | None = None) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        action = (params or {}).get("action") or "capture"
        if action not in actions:
            raise AirflowFailException(f"action {action!r} is not available for this DAG; use one of {', '.join(actions)}")
        return [first] if action == "capture" else [steps[action]]

    return choose_action()


def _action_tasks(spec: CdcIngestionSpec, config: CaptureConfig) -> dict[str, Any]:
    """Return the first task of each action the spec offers (besides capture); no others are created."""
    offered = set(spec.actions) - {"capture"}
    if spec.mode == "connect":
        return _connect_action_tasks(spec, config, offered)
    return _embedded_action_tasks(config, offered)


def _embedded_action_tasks(config: CaptureConfig, offered: set[str]) -> dict[str, Any]:
    @task(task_id="request_resnapshot")
    def request_resnapshot(params: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from dagfoundry.cdc.signals import SignalError
        from dagfoundry.cdc.tasks import request_resnapshot as request

        tables = list((params or {}).get("tables") or [t.table_id for t in config.tables])
        try:
            return request(config, tables)
        except SignalError as exc:  # a wrong table or a missing signal table: retrying changes nothing
            raise AirflowFailException(str(exc)) from exc

    @task(task_id="reset_offsets")
    def reset_offsets() -> dict:
        from dagfoundry.cdc.tasks import reset_capture
        from dagfoundry.settings import lake_root

        return reset_capture(config, str(lake_root()))

    @task(task_id="drop_slot")
    def drop_slot() -> dict:
        from dagfoundry.cdc.tasks import decommission_capture
        from dagfoundry.settings import lake_root

        return decommission_capture(config, str(lake_root()))

    builders: dict[str, Any] = {"resnapshot": request_resnapshot, "reset_offsets": reset_offsets, "drop_slot": drop_slot}
    return {action: build() for action, build in builders.items() if action in offered}


def _connect_action_tasks(spec: CdcIngestionSpec, config: CaptureConfig, offered: set[str]) -> dict[str, Any]:
    from dagfoundry.operators.debezium_connect import (
        DebeziumConnectorResetOffsetsOperator,
        DebeziumConnectorRestartOperator,
        DebeziumConnectorStateOperator,
        DebeziumResnapshotOperator,
    )

    connect = spec.connect
    assert connect is not None
    common: dict[str, Any] = {"connector_name": config.engine_name, "kafka_connect_conn_id": connect.conn_id}
    steps: dict[str, Any] = {"restart_connector": DebeziumConnectorRestartOperator(task_id="restart_connector", **common)}
    if "reset_offsets" in offered:
        # Stop, DELETE the offsets, resume: the connector snapshots again under its snapshot mode.
        steps["reset_offsets"] = DebeziumConnectorResetOffsetsOperator(task_id="reset_offsets", **common)
    if "resnapshot" in offered and config.signal_table:
        steps["resnapshot"] = DebeziumResnapshotOperator(
            task_id="request_resnapshot",
            source_conn_id=config.conn_id,
            signal_table=config.signal_table,
            tables=None,
            captured_tables=[t.table_id for t in config.tables],
            database=config.database,
            **common,
        )
    stop = DebeziumConnectorStateOperator(task_id="stop_connector", action="stop", **common)

    @task(task_id="drop_slot")
    def drop_slot() -> dict:
        from dagfoundry.cdc.tasks import decommission_connector

        return decommission_connector(config, connect.conn_id)

    stop >> drop_slot()
    steps["drop_slot"] = stop
    return steps


def _ingest_tasks(spec: CdcIngestionSpec, config: CaptureConfig) -> tuple[Any, Any]:
    """Return the first task and the summary (XComArg) of the step that lands new change batches."""
    if spec.mode == "embedded":
        limits = spec.capture

        @task(task_id="capture", trigger_rule=NONE_FAILED)
        def capture() -> dict:
            from dagfoundry.cdc.embedded_capture import CaptureLimits
            from dagfoundry.cdc.tasks import capture as run_capture
            from dagfoundry.settings import lake_root

            bounds = CaptureLimits(
                idle_seconds=limits.idle.total_seconds(),
                max_events=limits.max_events,
                max_seconds=limits.max_duration.total_seconds(),
                chunk_events=limits.chunk_events,
                slot_wal_warn_bytes=limits.slot_wal_warn,
                slot_wal_fail_bytes=limits.slot_wal_fail,
            )
            return run_capture(config, str(lake_root()), bounds)

        captured: Any = capture()
        return captured.operator, captured

    from dagfoundry.cdc.connector_config import SourceConnection, debezium_properties
    from dagfoundry.operators.debezium_connect import DebeziumConnectorDeployOperator
    from dagfoundry.sensors.debezium_connect import ConnectorRunningSensor

    connect = spec.connect
    assert connect is not None
    placeholder = SourceConnection(host="", port=5432, dbname="", user="")
    properties = debezium_properties(config, placeholder, mode="connect")
    # The deploy operator fills the database.* settings from the source connection at run time.
    properties = {k: v for k, v in properties.items() if not k.startswith("database.")}
    if spec.source.database:
        properties["database.dbname"] = spec.source.database
    deploy = DebeziumConnectorDeployOperator(
        task_id="deploy_connector",
        connector_name=config.engine_name,
        config=properties,
        source_conn_id=config.conn_id,
        kafka_connect_conn_id=connect.conn_id,
        # Tables without a replica identity stay out of the publication, as in embedded mode.
        capture_config=config,
        trigger_rule=NONE_FAILED,
    )
    running = ConnectorRunningSensor(
        task_id="connector_running",
        connector_name=config.engine_name,
        kafka_connect_conn_id=connect.conn_id,
        max_restarts=connect.max_restarts,
        poke_interval=10,
        timeout=600,
        deferrable=connect.deferrable if connect.deferrable is not None else default_deferrable(),
    )

    limits = spec.capture

    @task(task_id="pickup_sink_files")
    def pickup_sink_files(deployed: dict | None = None) -> dict:
        from dagfoundry.cdc.embedded_capture import CaptureLimits
        from dagfoundry.cdc.tasks import pickup
        from dagfoundry.settings import lake_root

        bounds = CaptureLimits(slot_wal_warn_bytes=limits.slot_wal_warn, slot_wal_fail_bytes=limits.slot_wal_fail)
        return pickup(config, str(lake_root()), connect.sink_dir, deployed=deployed, limits=bounds)

    deployed: Any = deploy.output
    picked = pickup_sink_files(deployed)
    running >> picked
    deploy >> running
    return deploy, picked


def default_deferrable() -> bool:
    """Return Airflow's ``[operators] default_deferrable`` (configuration only; no I/O beyond it)."""
    from airflow.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _check_quality(spec: CdcIngestionSpec, source: str, capture_summary: Any) -> Any:
    max_rows = spec.max_rows_per_batch

    @task(task_id="check_quality")
    def check_quality(summary: dict) -> dict:
        from dagfoundry.cdc.tasks import check_quality as check
        from dagfoundry.settings import lake_root

        return check(str(lake_root()), source, summary, max_rows=max_rows)

    return check_quality(capture_summary)


def _plan_mirror(source: str, table_ids: list[str], max_rows: int | None) -> Any:
    @task(task_id="plan_mirror")
    def plan_mirror() -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from dagfoundry.cdc.tasks import prepare_mirror
        from dagfoundry.settings import lake_root

        plan = prepare_mirror(str(lake_root()), source, table_ids, max_rows)
        if plan is None:
            raise AirflowSkipException("no new change batches: the mirrors are up to date")
        return plan

    return plan_mirror()


def _run_mirror(spec: CdcIngestionSpec, plan: Any) -> Any:
    """Return the task running the plan's queries: ``duckdb_mirror`` in this process or ``spark_mirror``."""
    if spec.engine == "spark":
        return SparkSubmitOperator(
            task_id="spark_mirror",
            application=application_path("cdc_mirror"),
            application_args=[plan],
            name=f"dagfoundry-cdc-mirror-{spec.name}",
            **submit_options(spec.spark),
        )
    settings = spec.duckdb.settings()

    @task(task_id="duckdb_mirror")
    def duckdb_mirror(plan_path: str) -> dict:
        """Run the plan's queries on the embedded engine, in this task's process."""
        from dagfoundry.cdc.tasks import run_mirror

        return run_mirror(plan_path, engine="duckdb", duckdb=settings)

    return duckdb_mirror(plan)


def _publish_mirror(dag_id: str, source: str, table_ids: list[str], plan: Any, capture_summary: Any) -> Any:
    mirrors = [mirror_asset_name(source, t) for t in table_ids]

    @task(task_id="publish_mirror", **publishing_task_args(dag_id, mirrors))
    def publish_mirror(plan_path: str, summary: dict | None = None, outlet_events: Any = None) -> dict:
        from dagfoundry.cdc.tasks import publish_mirror as publish

        result = publish(plan_path)
        log.info("mirrors of %s published from engine %s: %s", source, result.get("engine"),
                 ", ".join(f"{t} ({f['row_count']} rows)" for t, f in sorted(result.get("tables", {}).items())) or "none")
        slot = (summary or {}).get("slot") or {}
        # Only the mirrors this run replaced: a one-table re-snapshot emits that table's event.
        for table_id, figures in sorted(result.get("tables", {}).items()):
            extra = {k: v for k, v in figures.items() if isinstance(v, int | str)}
            if slot.get("retained_wal_bytes") is not None:
                extra["slot_retained_wal_bytes"] = slot["retained_wal_bytes"]
            extra["unavailable_values"] = sum((figures.get("unavailable_values") or {}).values())
            emit_published(outlet_events, dag_id, mirror_asset_name(source, table_id), extra)
        return result

    return publish_mirror(plan, capture_summary)


def _capture_health(capture_summary: Any, quality_summary: Any, mirror_summary: Any) -> Any:
    # publish_mirror is skipped when nothing was planned: its summary is then None.
    @task(task_id="capture_health", trigger_rule="none_failed")
    def capture_health(summary: dict | None = None, quality: dict | None = None, mirror: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from dagfoundry.cdc.tasks import CaptureHealthError, report_capture_health

        try:
            return report_capture_health(summary, quality, mirror)
        except CaptureHealthError as exc:  # judged on this run's results: a retry would say the same
            raise AirflowFailException(str(exc)) from exc

    return capture_health(capture_summary, quality_summary, mirror_summary)


def _snowflake_merges(spec: CdcIngestionSpec, config: CaptureConfig, upstream: Any) -> list[Any]:
    from dagfoundry.operators.snowflake_cdc_merge import SnowflakeCdcMergeOperator

    target = spec.snowflake
    assert target is not None
    merges = []
    for table in config.tables:
        merge = SnowflakeCdcMergeOperator(
            task_id=f"merge_{table.schema}_{table.table}_into_snowflake",
            snowflake_conn_id=target.conn_id,
            source=config.source,
            table_id=table.table_id,
            target_table=f"{target.target_schema}.{table.table}".upper(),
            key_columns=list(table.primary_key) or None,
            delete_mode=target.delete_mode,
        )
        upstream >> merge
        merges.append(merge)
    return merges
