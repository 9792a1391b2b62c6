"""The capture's publication, managed by the project (both modes).

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
    from dagfoundry.errors import DagfoundryError


def prepare_source(
    connection: SourceConnection,
    captured: Sequence[str],
    *,
    publication: str,
    signal_table: str | None,
    replica_identity_full: bool,
    subject: str,
    error: type[DagfoundryError],
) -> dict[str, list[str]]:
    """Make the source ready to capture ``captured`` (either mode): the signal table, REPLICA
    IDENTITY FULL when the spec asks, and the publication holding exactly these tables plus the
    signal table.

    :param subject: who prepares, for messages (``capture 'shop'``, ``connector 'shop-cdc'``)
    :param error: the caller's exception type, raised when the publication cannot be changed
    :return: the publication's changes (:func:`sync_publication`)
    """
    import psycopg2

    from dagfoundry.cdc.replica_identity import set_full_identity
    from dagfoundry.cdc.signals import ensure_signal_table

    if signal_table:
        ensure_signal_table(connection, signal_table)
    if replica_identity_full:
        set_full_identity(connection, captured)
    members = [*captured, *([signal_table] if signal_table else [])]
    try:
        return sync_publication(connection, publication, members)
    except psycopg2.Error as exc:
        raise error(
            f"{subject}: cannot create or update publication {publication!r} for {', '.join(members)}: "
            f"{str(exc).strip()}. The source user must own these tables, or a superuser creates the publication "
            "once with exactly these tables"
        ) from exc


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
