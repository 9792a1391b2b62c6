"""Task callables for a CDC DAG; each returns a small JSON-safe summary for XCom.

A DAG chains them per source (``max_active_runs=1``: two captures of one source must not
run at once)::

    capture (embedded)  or  pickup (connect)      -> {"batch_id", "rows_per_table", ...}
      -> check_quality(capture_summary)           -> {"tables": {...figures...}, "failed_tables": {...}}
      -> update_mirror()                          -> {"tables": {table: {"last_batch_id", "row_count"}}, "failed_tables"}
         (or prepare_mirror -> run_mirror(plan) on duckdb | SparkSubmitOperator(cdc_mirror, [plan]) -> publish_mirror(plan))

UI actions (manual runs with params): :func:`request_resnapshot`, :func:`reset_capture`,
:func:`decommission_capture` (embedded mode; connect mode uses the Kafka Connect operators
and :func:`decommission_connector`). The last task, :func:`report_capture_health`, fails the run
for what must not pass silently (a skipped table, a table whose batches failed their quality
checks, a slot holding too much WAL) after the other tables were landed and mirrored.
Configuration arrives as frozen dataclasses; secrets come from the Airflow connection
inside the task and never reach a return value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection
from dagfoundry.cdc.embedded_capture import CaptureLimits
from dagfoundry.errors import DagfoundryError

log = logging.getLogger(__name__)


class CaptureHealthError(DagfoundryError):
    """A capture ran but left something that needs a person: a skipped table, a full slot."""


def capture(config: CaptureConfig, lake_root: str, limits: CaptureLimits = CaptureLimits()) -> dict:
    """Capture one embedded micro-batch and land it; return the capture summary."""
    from dagfoundry.cdc.embedded_capture import capture_embedded

    return capture_embedded(config, Path(lake_root), limits=limits).summary()


def pickup(
    config: CaptureConfig,
    lake_root: str,
    sink_dir: str,
    pattern: str = "**/*.json",
    settle_seconds: float = 0.0,
    deployed: Mapping | None = None,
    limits: CaptureLimits = CaptureLimits(),
) -> dict:
    """Land the sink files that are new since the last pickup; return the capture summary.

    :param deployed: the deploy task's result (tables it left out or signalled)
    :param limits: only the slot thresholds (``slot_wal_warn_bytes``, ``slot_wal_fail_bytes``) apply
    """
    from dagfoundry.cdc.sink_pickup import pickup_sink_files

    result = pickup_sink_files(
        config, Path(lake_root), Path(sink_dir), pattern=pattern, settle_seconds=settle_seconds, deployed=deployed,
        slot_wal_warn_bytes=limits.slot_wal_warn_bytes, slot_wal_fail_bytes=limits.slot_wal_fail_bytes,
    )
    return result.summary()


def check_quality(lake_root: str, source: str, capture_summary: Mapping | None = None, max_rows: int | None = None) -> dict:
    """Check every landed batch not yet mirrored and not yet checked; never raise for a table.

    Not only the capture's own batches: one landed just before a crash (the run failed
    before its check) is checked by the next run. ``capture_summary`` is accepted for the
    DAG's data dependency; its batches are among those checked.

    A table whose batches fail is reported in ``failed_tables`` (table -> reason) instead of
    failing the task: its batches get no quality record, so the mirror plan leaves that
    table alone (and checks it again next run) while the other tables are mirrored, and
    :func:`report_capture_health` fails the run at its end naming the table.
    """
    from dagfoundry.cdc import landing
    from dagfoundry.cdc.mirror import read_mirror_state
    from dagfoundry.cdc.quality import quality_failure, require_checked
    from dagfoundry.errors import DataQualityError

    figures: dict[str, dict] = {}
    failed: dict[str, str] = {}
    root = Path(lake_root)
    for table_id in landing.list_landed_tables(root, source):
        state = read_mirror_state(root, source, table_id)
        pending = landing.list_batches(root, source, table_id, after=state["last_batch_id"] if state else None)
        if not pending:
            continue
        try:
            checked = require_checked(root, source, table_id, pending, max_rows=max_rows)
        except DataQualityError as exc:
            failed[table_id] = quality_failure(table_id, exc)
            log.error("%s", failed[table_id])
            continue
        figures[table_id] = {"unmirrored_batches": pending, "checked_now": checked}
    return {"tables": figures, "failed_tables": failed}


def update_mirror(
    lake_root: str,
    source: str,
    tables: Sequence[str] | None = None,
    conn_id: str = "spark_local",
    engine: str = "duckdb",
    duckdb: Mapping | None = None,
) -> dict:
    """Bring the lake mirrors up to date on ``engine`` (DuckDB here, or Spark through the provider hook) and publish them."""
    from dagfoundry.cdc.mirror import update_mirrors

    return update_mirrors(Path(lake_root), source, tables=tables, engine=engine, duckdb=duckdb, conn_id=conn_id)


def prepare_mirror(lake_root: str, source: str, tables: Sequence[str] | None = None, max_rows: int | None = None) -> str | None:
    """Write the mirror plan; its path goes to the engine's task (``duckdb_mirror`` or ``spark_mirror``)."""
    from dagfoundry.cdc.mirror import prepare_mirror_plan

    return prepare_mirror_plan(Path(lake_root), source, tables, max_rows=max_rows)


def run_mirror(plan_path: str, engine: str = "duckdb", duckdb: Mapping | None = None) -> dict:
    """Run the plan's queries on ``engine``; return the rows staged per table and how long each took."""
    from dagfoundry.cdc.mirror import RESULT_ENGINE_KEY, run_mirror_plan

    result = run_mirror_plan(plan_path, engine=engine, duckdb=duckdb)
    tables = {t: r for t, r in result.items() if t != RESULT_ENGINE_KEY}
    for table_id, figures in sorted(tables.items()):
        log.info("mirror %s: engine %s staged %s rows in %s s", table_id, engine, figures.get("row_count"), figures.get("seconds"))
    return {"engine": engine, "tables": tables}


def publish_mirror(plan_path: str | None) -> dict:
    """Verify and publish what the mirror job (either engine) staged for ``plan_path``."""
    from dagfoundry.cdc.mirror import publish_mirror_plan

    return publish_mirror_plan(plan_path)


def request_resnapshot(config: CaptureConfig, tables: Sequence[str], connection: SourceConnection | None = None) -> dict:
    """Insert an incremental-snapshot signal for ``tables``; the next capture performs it.

    :raises SignalError: for a table that is not captured or has no replica identity (the
        capture skips it, so a signal would do nothing)
    """
    from dagfoundry.cdc.replica_identity import uncapturable_tables
    from dagfoundry.cdc.signals import SignalError, request_incremental_snapshot

    if not config.signal_table:
        raise SignalError(f"capture {config.source!r} has no signal table; set signal_table to re-snapshot")
    captured = [t.table_id for t in config.tables]
    unknown = [t for t in tables if t not in captured]
    if unknown:
        raise SignalError(f"re-snapshot: {', '.join(unknown)} not captured by {config.source!r} (captured: {', '.join(captured)})")
    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    skipped = uncapturable_tables(connection, list(tables), full_identity_is_set=config.replica_identity_full)
    if skipped:
        raise SignalError("re-snapshot cannot work: " + "; ".join(skipped[t] for t in sorted(skipped)))
    signal_ids = []
    for table_id in tables:
        declared = config.table(table_id).primary_key
        surrogate = declared[0] if len(declared) == 1 else None
        signal_ids.append(request_incremental_snapshot(connection, config.signal_table, [table_id], surrogate_key=surrogate))
    return {"source": config.source, "signal_ids": signal_ids, "tables": list(tables)}


def reset_capture(config: CaptureConfig, lake_root: str, drop_slot: bool = True) -> dict:
    """Reset the embedded offsets (and slot); the next capture takes a new snapshot."""
    from dagfoundry.cdc.offsets import reset_offsets

    return reset_offsets(config, Path(lake_root), drop_slot=drop_slot)


def decommission_capture(config: CaptureConfig, lake_root: str, connection: SourceConnection | None = None) -> dict:
    """Drop the capture's slot and publication and forget its offsets (a later capture re-snapshots)."""
    from dagfoundry.cdc.offsets import reset_offsets
    from dagfoundry.cdc.slots import decommission

    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    dropped = decommission(connection, config.slot, config.publication)
    reset = reset_offsets(config, Path(lake_root), connection=connection, drop_slot=False)
    return {**dropped, "kept_offsets": reset["kept_offsets"], "mirror_floor": reset["mirror_floor"]}


def decommission_connector(config: CaptureConfig, kafka_connect_conn_id: str, connection: SourceConnection | None = None) -> dict:
    """Decommission a Kafka Connect capture: stop the connector, delete its offsets, drop slot and publication.

    The connector config stays on Kafka Connect (STOPPED); a later start snapshots again.
    """
    from dagfoundry.cdc.slots import decommission
    from dagfoundry.hooks.debezium_connect import DebeziumConnectHook

    message = DebeziumConnectHook(kafka_connect_conn_id).reset_offsets(config.engine_name, resume=False)
    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    dropped = decommission(connection, config.slot, config.publication)
    return {**dropped, "connector": config.engine_name, "connector_offsets": message}


def report_capture_health(
    capture_summary: Mapping | None, quality_summary: Mapping | None = None, mirror_summary: Mapping | None = None
) -> dict:
    """Fail when the capture skipped tables, a table failed its quality checks, or the slot
    retains more WAL than allowed; warn about values the mirror cannot know.

    Runs last, so the other tables were landed and mirrored first.

    :param capture_summary: what ``capture``/``pickup`` returned
    :param quality_summary: what :func:`check_quality` returned (its ``failed_tables``)
    :param mirror_summary: what :func:`publish_mirror`/:func:`update_mirror` returned (its
        ``failed_tables`` and each table's ``unavailable_values``)
    :raises CaptureHealthError: naming every problem and its fix
    """
    summary = dict(capture_summary or {})
    problems = [*(summary.get("skipped_tables") or {}).values()]
    failed = {**((mirror_summary or {}).get("failed_tables") or {}), **((quality_summary or {}).get("failed_tables") or {})}
    problems += [failed[t] for t in sorted(failed)]
    unknown = {t: f["unavailable_values"] for t, f in ((mirror_summary or {}).get("tables") or {}).items()
               if f.get("unavailable_values")}
    if unknown:
        # Not a failure: the values were never sent (TOAST under REPLICA IDENTITY DEFAULT) and
        # no earlier event holds them; the rows are flagged in _df_unavailable.
        log.warning(
            "CDC mirror of %s holds values Debezium never sent (null, listed in _df_unavailable): %s; "
            "set REPLICA IDENTITY FULL on those tables (capture.replica_identity_full) and re-snapshot them",
            summary.get("source"), "; ".join(f"{t}: " + ", ".join(f"{c} ({n} rows)" for c, n in sorted(cols.items()))
                                             for t, cols in sorted(unknown.items())),
        )
    if summary.get("slot_failure"):
        problems.append(summary["slot_failure"])
    report = {"skipped_tables": sorted(summary.get("skipped_tables") or {}), "failed_tables": sorted(failed),
              "slot": summary.get("slot"), "slot_warning": summary.get("slot_warning"),
              "special_values": summary.get("special_values") or {}, "unavailable_values": unknown}
    if report["special_values"]:
        # Not a failure: the values are kept (text in _df_special), but readers must know.
        log.warning(
            "CDC capture %s landed values outside the lake types as null with their text in _df_special: %s",
            summary.get("source"), report["special_values"],
        )
    if problems:
        raise CaptureHealthError("CDC capture needs attention:\n" + "\n".join(f"- {p}" for p in problems))
    return report
