"""Turn Debezium JSON change events into landing rows (both capture modes use this).

An event's value is Debezium's envelope ``{"before", "after", "source", "op", "ts_ms"}``
(optionally wrapped as ``{"schema", "payload"}`` when a sink kept schemas). Rows keep the
order events were emitted in; that order, not the LSN, decides which event of a key is the
latest (incremental-snapshot rows carry no LSN).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagfoundry.cdc import landing
from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    import pyarrow as pa

    from dagfoundry.cdc.source_schema import SourceColumn, SourceTable

_DATA_OPS = frozenset("curd")


class ChangeEventError(DagfoundryError):
    """An event cannot be landed (malformed, truncate, unknown table)."""


def _json_decoder():
    try:
        import msgspec

        return msgspec.json.Decoder().decode
    except ImportError:  # msgspec ships with Airflow; plain json is the slow fallback
        return json.loads


class ChangeBatchBuilder:
    """Collect one batch of change events per table, in emission order.

    :param source: the capture's source name (Debezium ``topic.prefix``)
    :param tables: captured tables by ``schema.table``
    :param ignored_tables: tables whose events are dropped silently (the signal table)
    """

    def __init__(self, source: str, tables: Mapping[str, SourceTable], ignored_tables: tuple[str, ...] = ()) -> None:
        self.source = source
        self.tables = dict(tables)
        self._ignored = frozenset(ignored_tables)
        self._prefix = f"{source}."
        self._rows: dict[str, list[tuple[str, int | None, int | None, dict]]] = {t: [] for t in self.tables}
        self._decode = _json_decoder()
        self.ignored_events = 0

    def add_json(self, destination: str | None, key: str | bytes | None, value: str | bytes | None) -> None:
        """Add one event as Debezium's JSON key and value strings.

        :param destination: ``<source>.<schema>.<table>`` (Kafka topic); None when the
            table is to be read from the envelope
        :param key: the key JSON; used for tombstones (``value`` None)
        :param value: the envelope JSON, or None for a tombstone
        """
        if destination is not None and not destination.startswith(self._prefix):
            self.ignored_events += 1  # heartbeats, transaction metadata
            return
        if value is None:
            table_id = destination[len(self._prefix) :] if destination else None
            if table_id is None or key is None:
                raise ChangeEventError(f"capture {self.source!r}: a tombstone without topic or key cannot be applied")
            self.add_tombstone(table_id, _unwrap(self._decode(key)))
            return
        self.add_envelope(_unwrap(self._decode(value)))

    def add_envelope(self, envelope: Mapping[str, Any]) -> None:
        """Add one decoded Debezium envelope."""
        op = envelope.get("op")
        source = envelope.get("source") or {}
        table_id = f"{source.get('schema')}.{source.get('table')}"
        if table_id in self._ignored or op == "m":
            self.ignored_events += 1
            return
        rows = self._rows.get(table_id)
        if rows is None:
            raise ChangeEventError(f"capture {self.source!r}: event for table {table_id!r}, which is not captured")
        if op not in _DATA_OPS:
            raise ChangeEventError(
                f"capture {self.source!r}: table {table_id}: operation {op!r} cannot be mirrored"
                + (" (TRUNCATE: re-snapshot the table)" if op == "t" else "")
            )
        image = envelope.get("before") if op == "d" else envelope.get("after")
        if image is None:
            raise ChangeEventError(f"capture {self.source!r}: table {table_id}: {op!r} event without its row image")
        rows.append((op, source.get("lsn"), source.get("ts_ms"), image))

    def add_tombstone(self, table_id: str, key: Mapping[str, Any]) -> None:
        """Add a tombstone (a delete known by its key only)."""
        if table_id in self._ignored:
            return
        rows = self._rows.get(table_id)
        if rows is None:
            raise ChangeEventError(f"capture {self.source!r}: tombstone for table {table_id!r}, which is not captured")
        rows.append(("d", None, None, dict(key)))

    def counts(self) -> dict[str, int]:
        """Return the number of rows collected per table."""
        return {t: len(rows) for t, rows in self._rows.items()}

    @property
    def total(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def to_arrow(self, table_id: str, batch_id: int) -> pa.Table:
        """Return a table's rows as an Arrow table with the landing columns."""
        return rows_to_arrow(self.tables[table_id], self._rows[table_id], batch_id)


def rows_to_arrow(table: SourceTable, rows: list[tuple[str, int | None, int | None, dict]], batch_id: int) -> pa.Table:
    """Build the landing Arrow table of one table's events (in emission order)."""
    import pyarrow as pa

    from dagfoundry.cdc.source_schema import arrow_type

    keys = frozenset(table.primary_key)
    arrays, fields = [], []
    for column in table.columns:
        # A delete's before-image is trustworthy only for key columns (REPLICA IDENTITY
        # DEFAULT fills the others with placeholders), so deletes land the key only.
        name = column.name
        if name in keys:
            values = [r[3].get(name) for r in rows]
        else:
            values = [None if r[0] == "d" else r[3].get(name) for r in rows]
        field_type = arrow_type(column)
        arrays.append(_to_array(column, values, field_type, table.table_id))
        fields.append(pa.field(name, field_type))
    n = len(rows)
    meta = [
        (landing.OP, pa.array([r[0] for r in rows], pa.string())),
        (landing.BATCH_ID, pa.array([batch_id] * n, pa.int64())),
        (landing.SEQ, pa.array(range(n), pa.int64())),
        (landing.LSN, pa.array([r[1] for r in rows], pa.int64())),
        (landing.SOURCE_TS_MS, pa.array([r[2] for r in rows], pa.int64())),
        (landing.DELETED, pa.array([r[0] == "d" for r in rows], pa.bool_())),
    ]
    for name, array in meta:
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _to_array(column: SourceColumn, values: list, field_type: pa.DataType, table_id: str) -> pa.Array:
    import pyarrow as pa

    kind = column.kind
    try:
        if kind in ("date", "timestamp", "time"):
            # Debezium sends epoch days / microseconds as integers.
            storage = pa.int32() if kind == "date" else pa.int64()
            return pa.array(values, storage).cast(field_type)
        if kind in ("decimal", "timestamptz"):
            return pa.array(values, pa.string()).cast(field_type)
        if kind == "binary":
            return pa.array([None if v is None else base64.b64decode(v) for v in values], field_type)
        if kind == "string":
            values = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
        return pa.array(values, field_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise ChangeEventError(
            f"table {table_id}: column {column.name} ({column.pg_type}) has a value that is not {field_type}: {exc}"
        ) from exc


def _unwrap(document: Any) -> Any:
    """Return the payload of a ``{"schema", "payload"}`` document, or the document itself."""
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        return document["payload"]
    return document
