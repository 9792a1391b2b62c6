"""The landing contract: where raw change batches live and what their columns mean.

A landed batch is ``<lake_root>/landing/<source>/<schema>.<table>/batch_id=<12 digits>/``
holding Parquet files and ``_dagfoundry_batch.json`` (row count, key columns). It is
published atomically (staged, then :func:`dagfoundry.lake.publish.publish_directory`) and
never changes afterwards. Columns: every source column (after-image for ``c``/``u``/``r``;
for ``d`` the before-image, at least the key columns) plus the metadata columns below.
Emission order across batches is ``(_df_batch_id, _df_seq)``.

This module is the one place the Snowflake MERGE, the lake mirror and the capture agree on.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError
from dagfoundry.lake.publish import LakeLocation, publish_directory

if TYPE_CHECKING:
    import pyarrow as pa

#: 'c' insert, 'u' update, 'd' delete, 'r' snapshot read, 't' truncate (string)
OP = "_df_op"
#: a TRUNCATE marker row: every source column null; the table is empty as of this event
TRUNCATE_OP = "t"
#: operations that remove rows (``_df_deleted`` is true for them)
REMOVING_OPS = ("d", TRUNCATE_OP)
#: the batch id (int64)
BATCH_ID = "_df_batch_id"
#: emission order within the batch and table, 0..n-1 (int64)
SEQ = "_df_seq"
#: PostgreSQL LSN of the change (int64, null for snapshot and incremental-snapshot rows)
LSN = "_df_lsn"
#: commit time in the source, epoch milliseconds (int64)
SOURCE_TS_MS = "_df_source_ts_ms"
#: True for deletes and truncate markers (boolean)
DELETED = "_df_deleted"
#: JSON object: column -> the source's text of a value its lake type cannot hold (the
#: column is null in that row); null when every value fits (string, nullable). Batches
#: landed before it existed lack it.
SPECIAL = "_df_special"
#: JSON array of the columns whose value Debezium did not send (an unchanged TOASTed value
#: in an UPDATE under REPLICA IDENTITY DEFAULT); they land null. The mirror carries the
#: key's previous value forward; there it lists the columns whose value is still unknown.
UNAVAILABLE = "_df_unavailable"
#: metadata columns every landed batch has
REQUIRED_METADATA = (OP, BATCH_ID, SEQ, LSN, SOURCE_TS_MS, DELETED)
METADATA_COLUMNS = (*REQUIRED_METADATA, SPECIAL, UNAVAILABLE)
#: order of events across batches (latest = greatest)
EMISSION_ORDER = (BATCH_ID, SEQ)

LANDING_DIR = "landing"
BATCH_PREFIX = "batch_id="
BATCH_MANIFEST = "_dagfoundry_batch.json"
_BATCH_DIR = re.compile(r"^batch_id=(\d{12})$")


class LandingError(DagfoundryError):
    """A batch cannot be landed or read as the contract says."""


def format_batch_dir(batch_id: int) -> str:
    """Return the directory name of a batch, e.g. ``batch_id=000000000042``."""
    if batch_id < 0 or batch_id >= 10**12:
        raise LandingError(f"batch id {batch_id} is outside 0..999999999999")
    return f"{BATCH_PREFIX}{batch_id:012d}"


def parse_batch_dir(name: str) -> int | None:
    """Return the batch id of a directory name, or None if it is not a batch directory."""
    match = _BATCH_DIR.match(name)
    return int(match.group(1)) if match else None


def table_landing_relative(source: str, table_id: str) -> str:
    """Return ``landing/<source>/<schema>.<table>`` (relative to the lake root)."""
    return f"{LANDING_DIR}/{source}/{table_id}"


def batch_location(lake_root: Path, source: str, table_id: str, batch_id: int) -> LakeLocation:
    """Return the publishable location of one table's batch."""
    return LakeLocation(Path(lake_root), f"{table_landing_relative(source, table_id)}/{format_batch_dir(batch_id)}")


def batch_path(lake_root: Path, source: str, table_id: str, batch_id: int) -> Path:
    """Return the live directory of one table's batch."""
    return batch_location(lake_root, source, table_id, batch_id).live


def list_batches(lake_root: Path, source: str, table_id: str, after: int | None = None) -> list[int]:
    """Return the published batch ids of a table, ascending, optionally only those > ``after``."""
    root = Path(lake_root) / table_landing_relative(source, table_id)
    if not root.is_dir():
        return []
    ids = sorted(i for i in (parse_batch_dir(p.name) for p in root.iterdir() if p.is_dir()) if i is not None)
    return [i for i in ids if after is None or i > after]


def list_landed_tables(lake_root: Path, source: str) -> list[str]:
    """Return the ``schema.table`` ids that have a landing directory for ``source``."""
    root = Path(lake_root) / LANDING_DIR / source
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def next_batch_id(lake_root: Path, source: str) -> int:
    """Return the next batch id of a source: one more than the greatest landed (1 at first).

    One id is shared by all tables landed by one run, so a run's batches line up.
    """
    latest = max((max(list_batches(lake_root, source, t), default=0) for t in list_landed_tables(lake_root, source)), default=0)
    return latest + 1


def read_manifest(lake_root: Path, source: str, table_id: str, batch_id: int) -> dict:
    """Return a batch's manifest (``row_count``, ``key_columns``, ``ops``, ``columns``)."""
    path = batch_path(lake_root, source, table_id, batch_id) / BATCH_MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LandingError(f"batch {batch_id} of {source}/{table_id} has no manifest at {path}") from exc


def write_batch(
    lake_root: Path,
    source: str,
    table_id: str,
    batch_id: int,
    rows: pa.Table,
    key_columns: tuple[str, ...],
) -> Path:
    """Write one table's batch to staging and publish it atomically; return its live path.

    :param rows: the batch, with the source columns and :data:`METADATA_COLUMNS`
    :param key_columns: the table's primary key (recorded in the manifest)
    :raises LandingError: when the batch already exists (batches are immutable) or the
        rows lack a metadata column
    """
    import pyarrow.parquet as pq

    missing = [c for c in (*REQUIRED_METADATA, *key_columns) if c not in rows.column_names]
    if missing:
        raise LandingError(f"batch {batch_id} of {source}/{table_id} lacks columns {missing}")
    location = batch_location(lake_root, source, table_id, batch_id)
    if location.live.exists():
        raise LandingError(f"batch {batch_id} of {source}/{table_id} already exists at {location.live}; batches are immutable")
    staged = location.staging(uuid.uuid4().hex)
    staged.mkdir(parents=True)
    pq.write_table(rows, staged / "part-00000.parquet", compression="snappy")
    ops = rows.column(OP).value_counts().to_pylist() if rows.num_rows else []
    specials = count_special_values(rows)
    manifest = {
        "source": source,
        "table": table_id,
        "batch_id": batch_id,
        "row_count": rows.num_rows,
        "key_columns": list(key_columns),
        "ops": {str(item["values"]): int(item["counts"]) for item in ops},
        "columns": rows.column_names,
        "special_values": specials,
        "unavailable_values": count_unavailable_values(rows),
    }
    (staged / BATCH_MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
    if location.live.exists():
        raise LandingError(f"batch {batch_id} of {source}/{table_id} appeared while staging; another capture is running")
    publish_directory(location, staged, f"batch-{batch_id}")
    return location.live


def count_special_values(rows: pa.Table) -> dict[str, int]:
    """Return how many values of each column landed null with their text in :data:`SPECIAL`."""
    if SPECIAL not in rows.column_names:
        return {}
    counts: dict[str, int] = {}
    for text in rows.column(SPECIAL).drop_null().to_pylist():
        for column in json.loads(text):
            counts[column] = counts.get(column, 0) + 1
    return counts


def count_unavailable_values(rows: pa.Table) -> dict[str, int]:
    """Return how many values of each column Debezium did not send (:data:`UNAVAILABLE`)."""
    if UNAVAILABLE not in rows.column_names:
        return {}
    counts: dict[str, int] = {}
    for text in rows.column(UNAVAILABLE).drop_null().to_pylist():
        for column in json.loads(text):
            counts[column] = counts.get(column, 0) + 1
    return counts


def special_values_of(lake_root: Path, source: str, batch_ids: list[int] | tuple[int, ...]) -> dict[str, dict[str, int]]:
    """Return ``{table: {column: count}}`` of special values in the given batches (manifests)."""
    totals: dict[str, dict[str, int]] = {}
    for table_id in list_landed_tables(lake_root, source):
        present = set(list_batches(lake_root, source, table_id))
        for batch_id in batch_ids:
            if batch_id in present:
                for column, n in read_manifest(lake_root, source, table_id, batch_id).get("special_values", {}).items():
                    table = totals.setdefault(table_id, {})
                    table[column] = table.get(column, 0) + n
    return totals
