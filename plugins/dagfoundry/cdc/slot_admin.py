"""``python -m dagfoundry cdc-slots`` and ``cdc-drop-slot``: find and drop abandoned slots.

A spec owns the slot and publication its capture is configured with
(:func:`dagfoundry.factories.cdc_ingestion.capture_config_of`). A slot on the source that
no spec in the config folder owns is an orphan: it keeps WAL on the source for ever.
``cdc-drop-slot`` drops one (and its publication), refusing a slot that a spec still owns
or that a capture holds right now.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import SourceConnection

_SLOTS_SQL = """
SELECT slot_name, database, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_replication_slots WHERE slot_type = 'logical' AND slot_name LIKE %s ORDER BY slot_name
"""


def owned_slots(config_paths: Iterable[Path]) -> dict[str, tuple[str, str]]:
    """Return ``{slot: (dag name, publication)}`` of every valid cdc_ingestion spec."""
    from dagfoundry.factories.cdc_ingestion import capture_config_of
    from dagfoundry.specs.cdc_ingestion import CdcIngestionSpec
    from dagfoundry.specs.loading import SpecLoader, find_spec_files

    owned: dict[str, tuple[str, str]] = {}
    for root in config_paths:
        loader = SpecLoader(root if root.is_dir() else root.parent)
        for loaded in loader.load_all(find_spec_files(root)).specs:
            if isinstance(loaded.spec, CdcIngestionSpec):
                config = capture_config_of(loaded.spec)
                owned[config.slot] = (loaded.spec.name, config.publication)
    return owned


def list_slots(connection: SourceConnection, owned: dict[str, tuple[str, str]], pattern: str = "%") -> list[dict]:
    """Return the logical slots on the source server with their retained WAL and owner."""
    import psycopg2

    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(_SLOTS_SQL, (pattern,))
            rows = cur.fetchall()
    finally:
        conn.close()
    return [
        {"slot": slot, "database": database, "active": active, "retained_wal_bytes": retained,
         "owner": owned[slot][0] if slot in owned else None}
        for slot, database, active, retained in rows
    ]


def format_slots(slots: list[dict]) -> str:
    """Return a table of slots, orphans marked."""
    lines = [f"{'slot':40} {'database':24} {'active':6} {'retained WAL':>14}  owner"]
    for s in slots:
        size = "-" if s["retained_wal_bytes"] is None else f"{s['retained_wal_bytes'] / 2**20:,.1f} MiB"
        owner = s["owner"] or "ORPHAN (no spec): python -m dagfoundry cdc-drop-slot"
        lines.append(f"{s['slot']:40} {s['database']:24} {str(s['active']):6} {size:>14}  {owner}")
    return "\n".join(lines)


def drop_slot(connection: SourceConnection, slot: str, publication: str | None, owned: dict[str, tuple[str, str]]) -> dict:
    """Drop an orphaned slot and its publication; refuse one a spec still owns.

    :raises dagfoundry.errors.DagfoundryError: when a spec owns the slot, or a capture holds it
    """
    from dagfoundry.cdc.slots import decommission
    from dagfoundry.errors import DagfoundryError

    if slot in owned:
        raise DagfoundryError(
            f"slot {slot!r} belongs to the spec {owned[slot][0]!r}: remove the spec first, or use that DAG's "
            "drop_slot action"
        )
    return decommission(connection, slot, publication)
