"""The capture's publication, managed by the project (embedded mode).

Debezium's ``publication.autocreate.mode=filtered`` adds every table of
``table.include.list`` on its own. The project manages the publication instead
(``publication.autocreate.mode=disabled``) so that only tables with a replica identity ever
join it (:mod:`dagfoundry.cdc.replica_identity`) and a table removed from a spec, or found
uncapturable, leaves it: :func:`sync_publication` makes the membership exactly the captured
tables plus the signal table (Debezium reads signals from the change stream).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import SourceConnection


def _quoted(table_id: str) -> str:
    schema, table = table_id.split(".")
    return f'"{schema}"."{table}"'


def sync_publication(connection: SourceConnection, name: str, table_ids: Sequence[str]) -> dict[str, list[str]]:
    """Create the publication, or set its tables to exactly ``table_ids``; return the changes.

    :param connection: the source database (the user must own the tables, as Debezium needs)
    :param name: the publication
    :param table_ids: ``schema.table`` ids; all must exist
    :return: ``{"added": [...], "removed": [...]}``
    """
    import psycopg2

    wanted = sorted(set(table_ids))
    tables = ", ".join(_quoted(t) for t in wanted)
    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE PUBLICATION "{name}" FOR TABLE {tables}')
                return {"added": wanted, "removed": []}
            cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s", (name,))
            present = sorted(r[0] for r in cur.fetchall())
            if present != wanted:
                cur.execute(f'ALTER PUBLICATION "{name}" SET TABLE {tables}')
    finally:
        conn.close()
    return {"added": sorted(set(wanted) - set(present)), "removed": sorted(set(present) - set(wanted))}


def drop_publication(connection: SourceConnection, name: str) -> bool:
    """Drop the publication if it exists; return whether one was dropped."""
    import psycopg2

    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
            if cur.fetchone() is None:
                return False
            cur.execute(f'DROP PUBLICATION "{name}"')
            return True
    finally:
        conn.close()
