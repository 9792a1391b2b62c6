"""Land the change events a Kafka Connect sink wrote as files (``mode: connect``).

A sink connector (for example an S3 or file sink with the JSON format) writes Debezium
envelopes, one JSON document per line, into a directory. Each pickup lands the lines of
the files that are new since the last pickup as one batch (the same converter as the
embedded mode), then records those files as picked up. A crash between the two lands the
same files again in a later batch: harmless, the mirror keeps the latest event per key.

Files are read in emission order: names that carry Kafka's ``+<partition>+<start offset>``
(the S3 sink's ``<topic>+<partition>+<offset>.json``) sort by partition and offset, others
by modification time and name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection
from dagfoundry.cdc.embedded_capture import CaptureResult, state_dir

log = logging.getLogger(__name__)

PICKUP_STATE_FILE = "sink_pickup.json"
_KAFKA_FILE = re.compile(r"\+(\d+)\+(\d+)(?:\.[A-Za-z0-9.]+)?$")


def _emission_key(path: Path) -> tuple:
    match = _KAFKA_FILE.search(path.name)
    if match:
        topic = path.name[: match.start()]
        return (0, topic, int(match.group(1)), int(match.group(2)), 0.0, path.name)
    return (1, "", 0, 0, path.stat().st_mtime, str(path))


def new_sink_files(sink_dir: Path, picked: set[str], *, pattern: str = "**/*.json", settle_seconds: float = 0.0) -> list[Path]:
    """Return sink files not yet picked up, in emission order.

    :param settle_seconds: leave files modified more recently than this for the next pickup
        (a sink still writing them)
    """
    now = time.time()
    files = [
        p
        for p in Path(sink_dir).glob(pattern)
        if p.is_file() and str(p.relative_to(sink_dir)) not in picked and now - p.stat().st_mtime >= settle_seconds
    ]
    return sorted(files, key=_emission_key)


def pickup_sink_files(
    config: CaptureConfig,
    lake_root: Path,
    sink_dir: Path,
    *,
    connection: SourceConnection | None = None,
    pattern: str = "**/*.json",
    settle_seconds: float = 0.0,
    deployed: Mapping | None = None,
    slot_wal_warn_bytes: int | None = None,
    slot_wal_fail_bytes: int | None = None,
) -> CaptureResult:
    """Land the events of new sink files as one batch; return what was landed.

    Like an embedded capture, the result reports the connector's replication slot (its
    retained WAL, a warning or failure beyond the thresholds) and, from ``deployed``, the
    tables the deploy left out (no replica identity) and those it signalled for a snapshot.

    :param config: the capture (tables, source name; the same as the connector's)
    :param lake_root: the lake's root directory
    :param sink_dir: the directory the sink connector writes into
    :param connection: the source (column types come from its catalog); from
        ``config.conn_id`` when None
    :param pattern: glob of the sink's files under ``sink_dir``
    :param settle_seconds: see :func:`new_sink_files`
    :param deployed: what the deploy task returned (``skipped_tables``, ``snapshot_requested``)
    :param slot_wal_warn_bytes: warn when the slot retains more WAL (``capture.slot_wal_warn``)
    :param slot_wal_fail_bytes: report a failure beyond this (``capture.slot_wal_fail``);
        ``capture_health`` then fails the run after the mirror
    """
    from dagfoundry.cdc.change_events import ChangeBatchBuilder
    from dagfoundry.cdc.embedded_capture import land_builder
    from dagfoundry.cdc.source_schema import fetch_table_schemas

    started = time.monotonic()
    lake_root, sink_dir = Path(lake_root), Path(sink_dir)
    if not sink_dir.is_dir():
        raise FileNotFoundError(f"capture {config.source!r}: sink directory {sink_dir} does not exist")
    picked = read_picked_files(lake_root, config.source)
    files = new_sink_files(sink_dir, picked, pattern=pattern, settle_seconds=settle_seconds)
    connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
    report = _deploy_and_slot_report(config, connection, deployed, slot_wal_warn_bytes, slot_wal_fail_bytes)
    if not files:
        return CaptureResult(config.source, None, {}, "no_new_files", time.monotonic() - started, **report)
    schemas = fetch_table_schemas(config, connection)
    ignored = (config.signal_table,) if config.signal_table else ()
    builder = ChangeBatchBuilder(config.source, schemas, ignored_tables=ignored)
    for path in files:
        with path.open("rb") as handle:
            for line in handle:
                line = line.strip()
                if line and line != b"null":  # sinks write a tombstone's null value as "null"
                    builder.add_json(None, None, line)
    batch_id, rows = land_builder(builder, lake_root, config.source)
    from dagfoundry.cdc.mirror import publish_empty_mirrors

    publish_empty_mirrors(lake_root, config.source, schemas)
    write_picked_files(lake_root, config.source, picked | {str(p.relative_to(sink_dir)) for p in files})
    specials = landing.special_values_of(lake_root, config.source, [batch_id] if batch_id is not None else [])
    return CaptureResult(config.source, batch_id, rows, f"picked_up_{len(files)}_files", time.monotonic() - started,
                         batch_ids=(batch_id,) if batch_id is not None else (), special_values=specials, **report)


def _deploy_and_slot_report(
    config: CaptureConfig, connection: SourceConnection, deployed: Mapping | None, warn_bytes: int | None, fail_bytes: int | None
) -> dict:
    """Return the CaptureResult fields of the deploy's table decisions and the slot's WAL."""
    from dagfoundry.cdc.slots import SlotWalError, assess_slot_wal, read_slot_status

    slot = read_slot_status(connection, config.slot)
    warning = failure = None
    try:
        warning = assess_slot_wal(slot, warn_bytes=warn_bytes, fail_bytes=fail_bytes)
    except SlotWalError as exc:
        failure = str(exc)
        log.error("CDC pickup %s: %s", config.source, failure)
    deployed = deployed or {}
    return {"skipped_tables": dict(deployed.get("skipped_tables") or {}),
            "snapshot_requested": tuple(deployed.get("snapshot_requested") or ()),
            "slot": slot.summary(), "slot_warning": warning, "slot_failure": failure}


def read_picked_files(lake_root: Path, source: str) -> set[str]:
    """Return the sink files (relative paths) already picked up for ``source``."""
    path = state_dir(lake_root, source) / PICKUP_STATE_FILE
    return set(json.loads(path.read_text())["files"]) if path.is_file() else set()


def write_picked_files(lake_root: Path, source: str, files: set[str]) -> None:
    """Record the picked-up files atomically."""
    path = state_dir(lake_root, source) / PICKUP_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"files": sorted(files)}))
    os.replace(tmp, path)
