"""Reset an embedded capture: forget its offsets, drop its slot, rebuild mirrors from scratch.

After :func:`reset_offsets` the next capture finds no offsets and takes a new snapshot
(``snapshot.mode=initial``), re-creating the replication slot. Rows deleted in the source
while the capture was not running would survive in a mirror built on older batches, so the
reset also records a *mirror floor*: the mirror ignores every batch before the first batch
landed after the reset and rebuilds each table from there. The old offsets file is kept
beside the new state (``offsets.dat.reset-<time>``) for inspection.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection
from dagfoundry.cdc.embedded_capture import offsets_path, state_dir
from dagfoundry.errors import DagfoundryError

MIRROR_FLOOR_FILE = "mirror_floor.json"


class OffsetResetError(DagfoundryError):
    """The offsets cannot be reset now (a capture holds the slot)."""


def drop_replication_slot(connection: SourceConnection, slot: str) -> bool:
    """Drop a logical replication slot if it exists; return whether one was dropped.

    :raises OffsetResetError: when the slot is in use (a capture is running)
    """
    import psycopg2

    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
            if row is None:
                return False
            if row[0]:
                raise OffsetResetError(f"replication slot {slot!r} is in use by backend {row[1]}; stop the capture first")
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return True
    finally:
        conn.close()


def reset_offsets(
    config: CaptureConfig,
    lake_root: Path,
    *,
    connection: SourceConnection | None = None,
    drop_slot: bool = True,
) -> dict:
    """Forget a source's stored offsets (and its slot) so the next capture re-snapshots.

    :param config: the capture
    :param lake_root: the lake's root directory
    :param connection: the source; read from ``config.conn_id`` when None
    :param drop_slot: drop the replication slot too (it would otherwise keep holding WAL
        from the old position)
    :return: JSON-safe summary: kept offsets file, slot dropped, mirror floor
    """
    lake_root = Path(lake_root)
    offsets = offsets_path(lake_root, config.source)
    kept = None
    if offsets.exists():
        kept = offsets.with_name(f"{offsets.name}.reset-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(offsets, kept)
    dropped = False
    if drop_slot:
        connection = connection or SourceConnection.from_airflow(config.conn_id, config.database)
        dropped = drop_replication_slot(connection, config.slot)
    floor = landing.next_batch_id(lake_root, config.source)
    write_mirror_floor(lake_root, config.source, floor)
    from dagfoundry.cdc.capture_tables import forget_snapshotted

    forget_snapshotted(lake_root, config.source)  # the new initial snapshot covers every table
    return {"source": config.source, "kept_offsets": str(kept) if kept else None, "slot_dropped": dropped, "mirror_floor": floor}


def write_mirror_floor(lake_root: Path, source: str, floor: int) -> None:
    """Make mirrors ignore batches before ``floor`` (written atomically)."""
    path = state_dir(lake_root, source) / MIRROR_FLOOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"floor_batch_id": floor}))
    os.replace(tmp, path)


def read_mirror_floor(lake_root: Path, source: str) -> int | None:
    """Return the batch id mirrors start from after a reset, or None."""
    path = state_dir(lake_root, source) / MIRROR_FLOOR_FILE
    return json.loads(path.read_text())["floor_batch_id"] if path.is_file() else None
