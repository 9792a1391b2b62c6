"""Read captured tables' columns and keys from the PostgreSQL catalog; map them to Parquet.

Debezium's JSON without schemas loses types (a date is an int, a numeric a string), so
the landing types come from the catalog, read once per run. The mapping (documented in
``docs/cdc.md``) pairs each PostgreSQL type with how Debezium sends it (given the
properties in :mod:`dagfoundry.cdc.connector_config`) and the Arrow type it lands as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    import pyarrow as pa

    from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection

#: PostgreSQL type name (pg_type.typname) -> landing kind
_KINDS = {
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "oid": "int64",
    "float4": "float32",
    "float8": "float64",
    "bool": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time",
    "bytea": "binary",
    "numeric": "decimal",
}
_DECIMAL_MAX_PRECISION = 38


class SourceSchemaError(DagfoundryError):
    """A captured table is missing, has no primary key, or declares unknown key columns."""


@dataclass(frozen=True)
class SourceColumn:
    """One column: its name, PostgreSQL type, landing kind and decimal precision/scale.

    :param kind: ``int16|int32|int64|float32|float64|bool|date|timestamp|timestamptz|time|
        binary|decimal|string`` (``string`` covers text, uuid, json, enums, intervals, arrays,
        unconstrained numeric and anything else, as Debezium's text/JSON form)
    """

    name: str
    pg_type: str
    kind: str
    precision: int | None = None
    scale: int | None = None
    #: the column has a DEFAULT (rows existing when it was added read as that default)
    has_default: bool = False


@dataclass(frozen=True)
class SourceTable:
    """A captured table's columns (in ordinal order) and primary key."""

    table_id: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def landing_kind(pg_type: str, precision: int | None, scale: int | None) -> str:
    """Return the landing kind of a PostgreSQL type (see :class:`SourceColumn`)."""
    kind = _KINDS.get(pg_type, "string")
    if kind == "decimal" and (precision is None or precision > _DECIMAL_MAX_PRECISION):
        # Unconstrained numeric can hold any scale: keep the exact text rather than round.
        return "string"
    return kind


def arrow_type(column: SourceColumn) -> pa.DataType:
    """Return the Arrow (Parquet) type a column lands as."""
    import pyarrow as pa

    simple = {
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        # Spark has no TIME type; microseconds since midnight also hold 24:00:00.
        "time": pa.int64(),
        "binary": pa.binary(),
        "string": pa.string(),
    }
    if column.kind == "decimal":
        return pa.decimal128(column.precision or _DECIMAL_MAX_PRECISION, column.scale or 0)
    return simple[column.kind]


_COLUMNS_SQL = """
SELECT n.nspname || '.' || c.relname, a.attname, t.typname,
       CASE WHEN t.typname = 'numeric' AND a.atttypmod > 0 THEN ((a.atttypmod - 4) >> 16) & 65535 END,
       CASE WHEN t.typname = 'numeric' AND a.atttypmod > 0 THEN (a.atttypmod - 4) & 65535 END,
       a.atthasdef OR a.atthasmissing
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped AND n.nspname || '.' || c.relname = ANY(%s)
ORDER BY 1, a.attnum
"""

_KEYS_SQL = """
SELECT n.nspname || '.' || c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname || '.' || c.relname = ANY(%s)
ORDER BY 1, k.ord
"""


def fetch_table_schemas(config: CaptureConfig, connection: SourceConnection) -> dict[str, SourceTable]:
    """Read the captured tables' columns and keys from the source catalog.

    A table's configured ``primary_key`` wins over the catalog's; a table with neither
    cannot be mirrored and raises.

    :raises SourceSchemaError: naming the table and what is missing
    """
    import psycopg2

    ids = [t.table_id for t in config.tables]
    with psycopg2.connect(**connection.psycopg2_kwargs()) as conn, conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL, (ids,))
        columns: dict[str, list[SourceColumn]] = {}
        for table_id, name, pg_type, precision, scale, has_default in cur.fetchall():
            kind = landing_kind(pg_type, precision, scale)
            columns.setdefault(table_id, []).append(SourceColumn(name, pg_type, kind, precision, scale, bool(has_default)))
        cur.execute(_KEYS_SQL, (ids,))
        catalog_keys: dict[str, list[str]] = {}
        for table_id, name in cur.fetchall():
            catalog_keys.setdefault(table_id, []).append(name)
    conn.close()
    schemas: dict[str, SourceTable] = {}
    for table in config.tables:
        if table.table_id not in columns:
            raise SourceSchemaError(
                f"capture {config.source!r}: table {table.table_id} does not exist in database {connection.dbname!r}"
            )
        key = table.primary_key or tuple(catalog_keys.get(table.table_id, ()))
        if not key:
            raise SourceSchemaError(
                f"capture {config.source!r}: table {table.table_id} has no primary key; declare primary_key in the spec"
            )
        names = {c.name for c in columns[table.table_id]}
        unknown = [k for k in key if k not in names]
        if unknown:
            raise SourceSchemaError(f"capture {config.source!r}: table {table.table_id} has no key column(s) {unknown}")
        schemas[table.table_id] = SourceTable(table.table_id, tuple(columns[table.table_id]), tuple(key))
    return schemas
