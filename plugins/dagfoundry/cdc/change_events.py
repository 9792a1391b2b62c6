"""Turn Debezium JSON change events into landing rows (both capture modes use this).

An event's value is Debezium's envelope ``{"before", "after", "source", "op", "ts_ms"}``
(optionally wrapped as ``{"schema", "payload"}`` when a sink kept schemas). Rows keep the
order events were emitted in; that order, not the LSN, decides which event of a key is the
latest (incremental-snapshot rows carry no LSN).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagfoundry.cdc import landing
from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    import pyarrow as pa

    from dagfoundry.cdc.source_schema import SourceColumn, SourceTable

_DATA_OPS = frozenset("curd")
#: Debezium's value for an unchanged TOASTed column (``unavailable.value.placeholder``), as
#: text (also for bytea under ``binary.handling.mode=hex``: not hex, so never a real value)
#: and as a one-element array. Under ``base64`` Debezium sends null for bytea instead,
#: which cannot be told from a real NULL: hence hex.
UNAVAILABLE_PLACEHOLDER = "__debezium_unavailable_value"
_PLACEHOLDER_ARRAY = [UNAVAILABLE_PLACEHOLDER]
#: ``source.snapshot`` of an initial-snapshot record that is not the snapshot's last one:
#: offsets committed there would make Debezium restart the snapshot from scratch
_OPEN_SNAPSHOT_MARKS = frozenset(("true", "first", "first_in_data_collection", "last_in_data_collection"))


class ChangeEventError(DagfoundryError):
    """An event cannot be landed (malformed, truncate, unknown table)."""


def _json_decoder():
    try:
        import msgspec

        return msgspec.json.Decoder().decode
    except ImportError:  # msgspec ships with Airflow; plain json is the slow fallback
        return json.loads


@functools.cache
def _batch_decoder() -> Callable[[str | bytes], list] | None:
    """Return a decoder of ``[envelope | null, ...]`` that skips the fields we do not land.

    Field types are left open (``Any``) so values decode exactly as a full decode would.
    """
    try:
        import msgspec
    except ImportError:
        return None
    source = msgspec.defstruct("_Source", [(name, Any, None) for name in ("schema", "table", "lsn", "ts_ms", "snapshot")])
    fields = [("op", Any, None), ("source", source | None, None), ("before", Any, None), ("after", Any, None)]
    envelope = msgspec.defstruct("_Envelope", [*fields, ("schema", Any, None), ("payload", Any, None)])
    return msgspec.json.Decoder(list[envelope | None]).decode  # type: ignore[valid-type]


class _NoSource:
    schema = table = lsn = ts_ms = snapshot = None


_NO_SOURCE = _NoSource()


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
        #: per table, the columns that can be TOASTed (text, binary, json, arrays...)
        self._toastable = {t: tuple(c.name for c in s.columns if c.kind in ("string", "binary") and c.name not in s.primary_key)
                           for t, s in self.tables.items()}
        self.ignored_events = 0
        #: the latest data event belongs to an unfinished initial snapshot
        self.snapshot_open = False

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

    def add_json_batch(
        self, destinations: Sequence[str], values: str | bytes, key_of: Callable[[int], str | None]
    ) -> None:
        """Add a batch of events given as their topics and one JSON array of their values.

        One decode per batch, reading only the envelope fields we land, costs a fraction
        of one full decode per event (Debezium's ``source`` block alone has 15 fields).

        :param destinations: each event's ``<source>.<schema>.<table>`` (Kafka topic)
        :param values: ``[envelope, ...]`` in the same order, ``null`` for a tombstone
        :param key_of: returns the key JSON of the event at an index (tombstones only)
        """
        decode = _batch_decoder()
        envelopes = (decode or self._decode)(values)
        if len(envelopes) != len(destinations):
            raise ChangeEventError(
                f"capture {self.source!r}: {len(destinations)} destinations for {len(envelopes)} values in a batch"
            )
        prefix = self._prefix
        add = self._add_decoded if decode else (lambda document: self.add_envelope(_unwrap(document)))
        for index, (destination, value) in enumerate(zip(destinations, envelopes)):
            if not destination.startswith(prefix):
                self.ignored_events += 1  # heartbeats, transaction metadata
            elif value is None:
                self.add_json(destination, key_of(index), None)
            else:
                add(value)

    def _add_decoded(self, envelope: Any) -> None:
        """Add one envelope decoded by :func:`_batch_decoder`."""
        if envelope.schema is not None and envelope.payload is not None:
            self.add_envelope(envelope.payload)  # a converter that kept schemas
            return
        source = envelope.source or _NO_SOURCE
        self._track_snapshot(envelope.op, source.snapshot)
        self._add_change(envelope.op, f"{source.schema}.{source.table}", source.lsn, source.ts_ms, envelope.before, envelope.after)

    def add_envelope(self, envelope: Mapping[str, Any]) -> None:
        """Add one decoded Debezium envelope."""
        source = envelope.get("source") or {}
        self._track_snapshot(envelope.get("op"), source.get("snapshot"))
        self._add_change(
            envelope.get("op"),
            f"{source.get('schema')}.{source.get('table')}",
            source.get("lsn"),
            source.get("ts_ms"),
            envelope.get("before"),
            envelope.get("after"),
        )

    def _track_snapshot(self, op: Any, marker: Any) -> None:
        if op is not None and op != "m":
            self.snapshot_open = op == "r" and str(marker).lower() in _OPEN_SNAPSHOT_MARKS

    def _add_change(self, op: Any, table_id: str, lsn: Any, ts_ms: Any, before: Any, after: Any) -> None:
        if table_id in self._ignored or op == "m":
            self.ignored_events += 1
            return
        rows = self._rows.get(table_id)
        if rows is None:
            raise ChangeEventError(f"capture {self.source!r}: event for table {table_id!r}, which is not captured")
        if op == landing.TRUNCATE_OP:
            rows.append(truncate_marker(lsn, ts_ms))
            return
        if op not in _DATA_OPS:
            raise ChangeEventError(f"capture {self.source!r}: table {table_id}: operation {op!r} cannot be mirrored")
        image = before if op == "d" else after
        if image is None:
            raise ChangeEventError(f"capture {self.source!r}: table {table_id}: {op!r} event without its row image")
        if op in ("u", "c"):  # "c" too: an UPDATE of the key arrives as "d" + "c"
            _mark_unavailable(image, self._toastable[table_id])
        rows.append((op, lsn, ts_ms, image))

    def add_tombstone(self, table_id: str, key: Mapping[str, Any]) -> None:
        """Add a tombstone (a delete known by its key only)."""
        if table_id in self._ignored:
            return
        rows = self._rows.get(table_id)
        if rows is None:
            raise ChangeEventError(f"capture {self.source!r}: tombstone for table {table_id!r}, which is not captured")
        rows.append(("d", None, None, dict(key)))

    def take_rows(self) -> dict[str, list]:
        """Return the collected rows per table and start empty (chunked landing)."""
        taken, self._rows = self._rows, {t: [] for t in self.tables}
        return taken

    def counts(self) -> dict[str, int]:
        """Return the number of rows collected per table."""
        return {t: len(rows) for t, rows in self._rows.items()}

    @property
    def total(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def to_arrow(self, table_id: str, batch_id: int) -> pa.Table:
        """Return a table's rows as an Arrow table with the landing columns."""
        return rows_to_arrow(self.tables[table_id], self._rows[table_id], batch_id)


def _mark_unavailable(image: dict, columns: tuple[str, ...]) -> None:
    """Null the columns Debezium did not send (unchanged TOAST) and list them in the image."""
    missing = None
    for name in columns:  # on every insert and update: keep it to one comparison per value
        value = image.get(name)
        if value == UNAVAILABLE_PLACEHOLDER or (value.__class__ is list and value == _PLACEHOLDER_ARRAY):
            image[name] = None
            missing = [*(missing or ()), name]
    if missing:
        image[landing.UNAVAILABLE] = missing


def truncate_marker(lsn: Any, ts_ms: Any) -> tuple[str, Any, Any, dict]:
    """Return the landing row of a TRUNCATE: op ``t``, every source column null.

    The mirror drops every row of the table older than the marker (emission order).
    """
    return (landing.TRUNCATE_OP, lsn, ts_ms, {})


def rows_to_arrow(table: SourceTable, rows: list[tuple[str, int | None, int | None, dict]], batch_id: int) -> pa.Table:
    """Build the landing Arrow table of one table's events (in emission order).

    A value the column's lake type cannot hold lands as null, with its text in the row's
    ``_df_special`` (:mod:`dagfoundry.cdc.special_values`).
    """
    import pyarrow as pa

    from dagfoundry.cdc.source_schema import arrow_type

    n = len(rows)
    deleted = pa.array([r[0] in landing.REMOVING_OPS for r in rows], pa.bool_())
    specials: list[dict[str, str] | None] = [None] * n
    try:
        arrays = _columns_in_arrow(table, rows, deleted, specials)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        # Column by column in Python: slower, and names the column and value that failed.
        specials = [None] * n
        arrays = [_column_from_rows(table, column, rows, specials) for column in table.columns]
    fields = [pa.field(column.name, arrow_type(column)) for column in table.columns]
    meta = [
        (landing.OP, pa.array([r[0] for r in rows], pa.string())),
        (landing.BATCH_ID, pa.array([batch_id] * n, pa.int64())),
        (landing.SEQ, pa.array(range(n), pa.int64())),
        (landing.LSN, pa.array([r[1] for r in rows], pa.int64())),
        (landing.SOURCE_TS_MS, pa.array([r[2] for r in rows], pa.int64())),
        (landing.DELETED, deleted),
        (landing.SPECIAL, pa.array([None if s is None else json.dumps(s, sort_keys=True) for s in specials], pa.string())),
        (landing.UNAVAILABLE, pa.array([_unavailable_json(r[3]) for r in rows], pa.string())),
    ]
    for name, array in meta:
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _unavailable_json(image: dict) -> str | None:
    missing = image.get(landing.UNAVAILABLE)
    return json.dumps(missing) if missing else None


def _columns_in_arrow(table: SourceTable, rows: list, deleted: pa.Array, specials: list) -> list[pa.Array]:
    """Convert the row images in one pass of Arrow's converter (a struct array), then cast.

    Binary (hex) and array (JSON value) columns, and a column holding a special value
    (:mod:`dagfoundry.cdc.special_values`), go through Python per value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from dagfoundry.cdc.source_schema import arrow_type

    in_struct = [c for c in table.columns if _storage_type(c) is not None]
    images = pa.array([r[3] for r in rows], pa.struct([(c.name, _storage_type(c)) for c in in_struct]))
    children = dict(zip((c.name for c in in_struct), images.flatten()))
    keys, any_delete = frozenset(table.primary_key), pc.any(deleted).as_py()
    arrays = []
    for column in table.columns:
        array = children.get(column.name)
        if array is not None and _may_hold_special(column, array):
            array = None
        if array is not None:
            try:
                array = array.cast(arrow_type(column))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                array = None
        if array is None:
            arrays.append(_column_from_rows(table, column, rows, specials))
            continue
        if any_delete and column.name not in keys:
            # See _column_from_rows: deletes land the key only.
            array = pc.if_else(deleted, pa.scalar(None, array.type), array)
        arrays.append(array)
    return arrays


def _may_hold_special(column: SourceColumn, array: pa.Array) -> bool:
    """Return whether a column's raw values include one the fast path would get wrong."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dagfoundry.cdc import special_values as sv

    kind = column.kind
    if not len(array) or array.null_count == len(array):
        return False
    if kind == "decimal" or (kind == "string" and column.pg_type == "numeric"):
        return bool(pc.any(pc.is_in(array, value_set=pa.array(sv.NUMERIC_SPECIALS))).as_py())
    if kind in ("date", "timestamp"):
        low, high = (sv.MIN_DATE_DAYS, sv.MAX_DATE_DAYS) if kind == "date" else (sv.MIN_TIMESTAMP_US, sv.MAX_TIMESTAMP_US)
        bounds = pc.min_max(array).as_py()
        return bounds["min"] < low or bounds["max"] > high
    if kind == "timestamptz":
        return bool(pc.any(pc.match_substring_regex(array, r"^(?:[^0-9]|0000)")).as_py())
    return False


def _storage_type(column: SourceColumn) -> pa.DataType | None:
    """Return the Arrow type of a column's JSON values, None for those converted in Python."""
    import pyarrow as pa

    from dagfoundry.cdc.source_schema import arrow_type

    kind = column.kind
    if kind == "binary" or (kind == "string" and column.pg_type.startswith("_")):
        return None
    if kind == "date":
        return pa.int32()  # epoch days
    if kind in ("timestamp", "time"):
        return pa.int64()  # epoch / day microseconds
    if kind in ("decimal", "timestamptz"):
        return pa.string()  # exact text, ISO-8601
    return arrow_type(column)


#: kinds whose values may be special (:mod:`dagfoundry.cdc.special_values`)
_SPECIAL_KINDS = frozenset(("float32", "float64", "decimal", "date", "timestamp", "timestamptz"))


def _column_from_rows(table: SourceTable, column: SourceColumn, rows: list, specials: list) -> pa.Array:
    """Convert one column value by value (the reference path); record special values."""
    from dagfoundry.cdc import special_values
    from dagfoundry.cdc.source_schema import arrow_type

    # A delete's before-image is trustworthy only for key columns (REPLICA IDENTITY
    # DEFAULT fills the others with placeholders), so deletes land the key only.
    name = column.name
    if name in table.primary_key:
        values = [r[3].get(name) for r in rows]
    else:
        values = [None if r[0] == "d" else r[3].get(name) for r in rows]
    if column.kind in _SPECIAL_KINDS or (column.kind == "string" and column.pg_type == "numeric"):
        for i, value in enumerate(values):
            if value is None:
                continue
            values[i], text = special_values.convert(column.kind, column.pg_type, value)
            if text is not None:
                specials[i] = {**(specials[i] or {}), name: text}
    return _to_array(column, values, arrow_type(column), table.table_id)


def _to_array(column: SourceColumn, values: list, field_type: pa.DataType, table_id: str) -> pa.Array:
    import pyarrow as pa

    kind = column.kind
    try:
        if kind in ("date", "timestamp"):
            # Debezium sends epoch days / microseconds as integers.
            storage = pa.int32() if kind == "date" else pa.int64()
            return pa.array(values, storage).cast(field_type)
        if kind in ("decimal", "timestamptz"):
            return pa.array(values, pa.string()).cast(field_type)
        if kind == "binary":
            return pa.array([None if v is None else bytes.fromhex(v) for v in values], field_type)
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
