"""Decide, at the start of a capture, which tables it captures and which need a snapshot.

- Tables without a replica identity stay out (:mod:`dagfoundry.cdc.replica_identity`);
  the run goes on with the others and reports each skipped table with its fix.
- Without stored offsets Debezium takes an **initial snapshot** of every captured table.
  Batches landed before that (a first snapshot that crashed, or an offsets reset) may hold
  rows deleted since, so the mirror floor moves to the first batch of the new snapshot.
- A captured table that was never snapshotted (added to the spec later, or capturable only
  now) gets an **incremental snapshot** signal: Debezium reads it in key-ordered chunks
  while streaming, resumably across runs.

``_cdc_state/<source>/tables.json`` records the tables snapshotted (or signalled) so far.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.cdc import landing

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection
    from dagfoundry.cdc.source_schema import SourceTable

TABLES_STATE_FILE = "tables.json"
COLUMNS_STATE_FILE = "columns.json"


@dataclass(frozen=True)
class CaptureTables:
    """The tables of one capture run.

    :param captured: ``schema.table`` ids in the publication and ``table.include.list``
    :param skipped: uncapturable tables and why (with the fix)
    :param to_snapshot: captured tables that get an incremental-snapshot signal
    :param initial_snapshot: no offsets are stored: Debezium snapshots every captured table
    """

    captured: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    to_snapshot: tuple[str, ...] = ()
    initial_snapshot: bool = False


def plan_capture_tables(config: CaptureConfig, connection: SourceConnection, lake_root: Path, *, offsets_exist: bool) -> CaptureTables:
    """Return which tables this run captures, skips and snapshots incrementally."""
    from dagfoundry.cdc.replica_identity import uncapturable_tables

    ids = [t.table_id for t in config.tables]
    skipped = uncapturable_tables(connection, ids, full_identity_is_set=config.replica_identity_full)
    captured = tuple(t for t in ids if t not in skipped)
    if not offsets_exist:
        return CaptureTables(captured, skipped, (), True)
    known = read_snapshotted(lake_root, config.source)
    to_snapshot = tuple(t for t in captured if t not in known)
    return CaptureTables(captured, skipped, to_snapshot, False)


def _state_path(lake_root: Path, source: str) -> Path:
    from dagfoundry.cdc.embedded_capture import state_dir

    return state_dir(lake_root, source) / TABLES_STATE_FILE


def read_snapshotted(lake_root: Path, source: str) -> set[str]:
    """Return the tables snapshotted (or signalled) so far.

    Without the state file (captures older than it) the tables with landed batches count.
    """
    path = _state_path(lake_root, source)
    if path.is_file():
        return set(json.loads(path.read_text())["snapshotted"])
    return set(landing.list_landed_tables(lake_root, source))


def record_snapshotted(lake_root: Path, source: str, tables: tuple[str, ...] | list[str]) -> None:
    """Add tables to the snapshotted set (written atomically)."""
    path = _state_path(lake_root, source)
    known = read_snapshotted(lake_root, source) | set(tables)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"snapshotted": sorted(known)}))
    os.replace(tmp, path)


def forget_snapshotted(lake_root: Path, source: str) -> None:
    """Forget every table (an offsets reset: the next initial snapshot covers them all)."""
    _state_path(lake_root, source).unlink(missing_ok=True)


def move_floor_for_new_snapshot(lake_root: Path, source: str) -> int | None:
    """Before an initial snapshot, make the mirror ignore batches landed earlier; return the floor.

    Nothing changes when no batch was landed since the current floor (first run, or right
    after an offsets reset, which moved the floor itself).
    """
    from dagfoundry.cdc.offsets import read_mirror_floor, write_mirror_floor

    floor = read_mirror_floor(lake_root, source) or 1
    following = landing.next_batch_id(lake_root, source)
    if following <= floor:
        return None
    write_mirror_floor(lake_root, source, following)
    return following


def _columns_path(lake_root: Path, source: str) -> Path:
    from dagfoundry.cdc.embedded_capture import state_dir

    return state_dir(lake_root, source) / COLUMNS_STATE_FILE


def record_columns(
    lake_root: Path, source: str, landed: Mapping[str, SourceTable], seen: Mapping[str, SourceTable]
) -> None:
    """Record the columns each table was landed with, and those the catalog had at the end.

    :param landed: the schemas the run landed with (read at its start)
    :param seen: the schemas read again after the run (a column only here was added mid-run)
    """
    path = _columns_path(lake_root, source)
    state = json.loads(path.read_text()) if path.is_file() else {}
    for table_id, table in landed.items():
        end = seen.get(table_id, table)
        state[table_id] = {"landed": list(table.column_names), "seen": list(end.column_names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    os.replace(tmp, path)


def columns_needing_snapshot(lake_root: Path, source: str, schemas: Mapping[str, SourceTable]) -> dict[str, list[str]]:
    """Return ``{table: [columns]}`` of added columns whose old rows the mirror cannot know.

    A column counts when it has a DEFAULT or was added while the last run captured; a
    table never recorded (first run, or captures older than the record) counts nothing.
    """
    path = _columns_path(lake_root, source)
    state = json.loads(path.read_text()) if path.is_file() else {}
    needed: dict[str, list[str]] = {}
    for table_id, table in schemas.items():
        known = state.get(table_id)
        if known is None:
            continue
        added = [c for c in table.columns if c.name not in known["landed"]]
        stale = [c.name for c in added if c.has_default or c.name in known["seen"]]
        if stale:
            needed[table_id] = stale
    return needed
