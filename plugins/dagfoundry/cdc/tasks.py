"""Task callables for a CDC DAG; each returns a small JSON-safe summary for XCom.

A DAG chains them per source (``max_active_runs=1``: two captures of one source must not
run at once)::

    capture (embedded)  or  pickup (connect)      -> {"batch_id", "rows_per_table", ...}
      -> check_quality(capture_summary)           -> {"tables": {...figures...}}
      -> update_mirror()                          -> {"tables": {table: {"last_batch_id", "row_count"}}}
         (or prepare_mirror -> SparkSubmitOperator(cdc_mirror, [plan]) -> publish_mirror(plan))

UI actions (manual runs with params): :func:`request_resnapshot`, :func:`reset_capture`.
Configuration arrives as frozen dataclasses; secrets come from the Airflow connection
inside the task and never reach a return value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection
from dagfoundry.cdc.embedded_capture import CaptureLimits


def capture(config: CaptureConfig, lake_root: str, limits: CaptureLimits = CaptureLimits()) -> dict:
    """Capture one embedded micro-batch and land it; return the capture summary."""
    from dagfoundry.cdc.embedded_capture import capture_embedded

    return capture_embedded(config, Path(lake_root), limits=limits).summary()


def pickup(config: CaptureConfig, lake_root: str, sink_dir: str, pattern: str = "**/*.json", settle_seconds: float = 0.0) -> dict:
    """Land the sink files that are new since the last pickup; return the capture summary."""
    from dagfoundry.cdc.sink_pickup import pickup_sink_files

    result = pickup_sink_files(config, Path(lake_root), Path(sink_dir), pattern=pattern, settle_seconds=settle_seconds)
    return result.summary()


def check_quality(lake_root: str, source: str, capture_summary: Mapping | None = None, max_rows: int | None = None) -> dict:
    """Check the batches a capture landed (all not yet mirrored when no summary is given)."""
    from dagfoundry.cdc.mirror import read_mirror_state
    from dagfoundry.cdc.quality import check_batches

    if capture_summary is not None:
        batch_id = capture_summary.get("batch_id")
        if batch_id is None:
            return {"tables": {}}
        tables = sorted(capture_summary.get("rows_per_table", {}))
        return {"tables": check_batches(Path(lake_root), source, [batch_id], tables=tables, max_rows=max_rows)}
    from dagfoundry.cdc import landing

    figures = {}
    for table_id in landing.list_landed_tables(Path(lake_root), source):
        state = read_mirror_state(Path(lake_root), source, table_id)
        after = state["last_batch_id"] if state else None
        figures.update(check_batches(Path(lake_root), source, tables=[table_id], after=after, max_rows=max_rows))
    return {"tables": figures}


def update_mirror(lake_root: str, source: str, tables: Sequence[str] | None = None, conn_id: str = "spark_local") -> dict:
    """Bring the lake mirrors up to date (Spark through the provider hook) and publish them."""
    from dagfoundry.cdc.mirror import update_mirrors

    return update_mirrors(Path(lake_root), source, tables=tables, conn_id=conn_id)


def prepare_mirror(lake_root: str, source: str, tables: Sequence[str] | None = None) -> str | None:
    """Write the mirror plan; its path goes to ``SparkSubmitOperator(application_args=[...])``."""
    from dagfoundry.cdc.mirror import prepare_mirror_plan

    return prepare_mirror_plan(Path(lake_root), source, tables)


def publish_mirror(plan_path: str | None) -> dict:
    """Verify and publish what the Spark job staged for ``plan_path``."""
    from dagfoundry.cdc.mirror import publish_mirror_plan

    return publish_mirror_plan(plan_path)


def request_resnapshot(config: CaptureConfig, tables: Sequence[str]) -> dict:
    """Insert an incremental-snapshot signal for ``tables``; the next capture performs it."""
    from dagfoundry.cdc.signals import SignalError, request_incremental_snapshot

    if not config.signal_table:
        raise SignalError(f"capture {config.source!r} has no signal table; set signal_table to re-snapshot")
    connection = SourceConnection.from_airflow(config.conn_id, config.database)
    captured = [t.table_id for t in config.tables]
    signal_id = request_incremental_snapshot(connection, config.signal_table, list(tables), captured_tables=captured)
    return {"source": config.source, "signal_id": signal_id, "tables": list(tables)}


def reset_capture(config: CaptureConfig, lake_root: str, drop_slot: bool = True) -> dict:
    """Reset the embedded offsets (and slot); the next capture takes a new snapshot."""
    from dagfoundry.cdc.offsets import reset_offsets

    return reset_offsets(config, Path(lake_root), drop_slot=drop_slot)
