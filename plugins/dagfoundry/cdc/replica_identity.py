"""Which captured tables may join the publication: those PostgreSQL can replicate.

A table in a publication that publishes updates and deletes must have a replica identity,
or PostgreSQL refuses the **application's own** ``UPDATE``/``DELETE`` on it ("cannot update
table ... because it does not have a replica identity and publishes updates"). So a table
joins only when ``pg_class.relreplident`` gives it one:

- ``d`` (default) with a primary key,
- ``i`` with the index chosen by ``REPLICA IDENTITY USING INDEX``,
- ``f`` (``REPLICA IDENTITY FULL``).

Every other table is skipped with a reason naming the fix; the other tables go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import SourceConnection

_IDENTITY_SQL = """
SELECT n.nspname || '.' || c.relname, c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY(%s)
"""


def identity_fix(table_id: str) -> str:
    """Return the statements that give a table a replica identity."""
    return (
        f"ALTER TABLE {table_id} REPLICA IDENTITY FULL, or give it a primary key, or "
        f"ALTER TABLE {table_id} REPLICA IDENTITY USING INDEX <a unique index on NOT NULL columns>"
    )


def uncapturable_tables(
    connection: SourceConnection, table_ids: Sequence[str], *, full_identity_is_set: bool = False
) -> dict[str, str]:
    """Return the tables that must stay out of the publication, each with the reason and fix.

    :param connection: the source database
    :param table_ids: ``schema.table`` ids
    :param full_identity_is_set: the capture sets ``REPLICA IDENTITY FULL`` itself before a
        table joins (``replica_identity_full``), so only missing tables are refused
    """
    import psycopg2

    with psycopg2.connect(**connection.psycopg2_kwargs()) as conn, conn.cursor() as cur:
        cur.execute(_IDENTITY_SQL, (list(table_ids),))
        found = {row[0]: row[1:] for row in cur.fetchall()}
    conn.close()
    problems: dict[str, str] = {}
    for table_id in table_ids:
        if table_id not in found:
            problems[table_id] = f"table {table_id} does not exist in database {connection.dbname!r} (or is not a table)"
            continue
        identity, has_pk, has_identity_index = found[table_id]
        if full_identity_is_set or identity == "f" or (identity == "d" and has_pk) or (identity == "i" and has_identity_index):
            continue
        setting = {"d": "DEFAULT without a primary key", "n": "NOTHING", "i": "USING INDEX on a dropped index"}.get(identity, identity)
        problems[table_id] = (
            f"table {table_id} has no replica identity (REPLICA IDENTITY {setting}): in the publication, the "
            f"application's UPDATE and DELETE on it would fail, so it is not captured. Fix: {identity_fix(table_id)}; "
            "the next capture then snapshots it"
        )
    return problems


def set_full_identity(connection: SourceConnection, table_ids: Sequence[str]) -> list[str]:
    """Set ``REPLICA IDENTITY FULL`` on the tables that lack it (needs ownership); return them."""
    import psycopg2

    changed = []
    with psycopg2.connect(**connection.psycopg2_kwargs()) as conn, conn.cursor() as cur:
        cur.execute(_IDENTITY_SQL, (list(table_ids),))
        for table_id, identity, _pk, _index in cur.fetchall():
            if identity != "f":
                schema, table = table_id.split(".")
                cur.execute(f'ALTER TABLE "{schema}"."{table}" REPLICA IDENTITY FULL')
                changed.append(table_id)
    conn.close()
    return sorted(changed)
