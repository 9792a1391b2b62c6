"""Debezium signals through the source's signal table (ad-hoc incremental snapshots).

The connector watches ``signal.data.collection``; a row inserted there is a command. An
``execute-snapshot`` row of type ``incremental`` makes the running connector re-read the
named tables in key-ordered chunks while it keeps streaming; the re-read rows arrive as
``r`` events with a null LSN and supersede older versions by emission order. The signal
is acted upon the next time the connector runs (embedded mode: the next capture).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import SourceConnection

_TABLE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$")


class SignalError(DagfoundryError):
    """A signal cannot be sent (bad table names, no signal table)."""


def _quoted(table_id: str) -> str:
    if not _TABLE_ID.match(table_id):
        raise SignalError(f"{table_id!r} is not a schema.table name")
    schema, table = table_id.split(".")
    return f'"{schema}"."{table}"'


def ensure_signal_table(connection: SourceConnection, signal_table: str) -> None:
    """Create the signal table with Debezium's fixed layout if it does not exist."""
    import psycopg2

    ddl = (
        f"CREATE TABLE IF NOT EXISTS {_quoted(signal_table)} "
        "(id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)"
    )
    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (signal_table,))
            if cur.fetchone()[0] is None:
                cur.execute(ddl)
    finally:
        conn.close()


def request_incremental_snapshot(
    connection: SourceConnection,
    signal_table: str,
    tables: Sequence[str],
    *,
    captured_tables: Sequence[str] | None = None,
    signal_id: str | None = None,
    surrogate_key: str | None = None,
) -> str:
    """Insert an ``execute-snapshot`` (incremental) signal for ``tables``; return its id.

    :param connection: the source database
    :param signal_table: ``schema.table`` of the connector's signal table
    :param tables: ``schema.table`` ids to re-snapshot
    :param captured_tables: when given, every table must be among them
    :param signal_id: the row id (idempotent retries reuse it); a new UUID by default
    :param surrogate_key: the column to chunk by, for a table without a primary key
    :raises SignalError: for an empty list, a table that is not captured, or a bad name
    """
    import psycopg2

    if not tables:
        raise SignalError("re-snapshot: no table given")
    for table_id in tables:
        _quoted(table_id)
        if captured_tables is not None and table_id not in captured_tables:
            raise SignalError(f"re-snapshot: table {table_id!r} is not captured (captured: {', '.join(captured_tables)})")
    signal_id = signal_id or f"dagfoundry-{uuid.uuid4().hex[:24]}"
    if len(signal_id) > 42:
        raise SignalError(f"re-snapshot: signal id {signal_id!r} is longer than the signal table's 42 characters")
    document: dict = {"data-collections": list(tables), "type": "incremental"}
    if surrogate_key:
        document["surrogate-key"] = surrogate_key
    data = json.dumps(document)
    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {_quoted(signal_table)} (id, type, data) VALUES (%s, 'execute-snapshot', %s) "
                "ON CONFLICT (id) DO NOTHING",
                (signal_id, data),
            )
    finally:
        conn.close()
    return signal_id
