"""The demo's operational database: a small shop in the local PostgreSQL, changed between runs."""

from __future__ import annotations

import random
from contextlib import closing

DEMO_DATABASE = "dagfoundry_demo"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def admin_connection(dbname: str = "postgres"):
    """Connect in autocommit mode (``with conn`` would open a transaction: use ``closing``)."""
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **PG)
    conn.autocommit = True
    return conn


def recreate_database(database: str = DEMO_DATABASE) -> None:
    """Drop the shop database (and the replication slots on it) and create it empty."""
    drop_database(database)
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')


def drop_database(database: str) -> None:
    """Drop a shop database and the replication slots on it."""
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
                    (database,))
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (database,))
        for (slot,) in cur.fetchall():
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def database_exists(database: str = DEMO_DATABASE) -> bool:
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return cur.fetchone() is not None


def replication_slots(database: str = DEMO_DATABASE) -> list[str]:
    """Return the names of the replication slots on the shop database."""
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (database,))
        return [r[0] for r in cur.fetchall()]


def seed(customers: int = 500, orders: int = 5000, seed_value: int = 7, *, database: str = DEMO_DATABASE) -> None:
    """Create the shop tables and fill them."""
    from psycopg2.extras import execute_values

    rng = random.Random(seed_value)
    cities = ["Zürich", "Genève", "Basel", "Lausanne", "Bern", None]
    with closing(admin_connection(database)) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (customer_id int PRIMARY KEY, name text NOT NULL, city text,"
            " created_at timestamptz NOT NULL DEFAULT now());"
            "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2),"
            " status text NOT NULL, ordered_at timestamp NOT NULL);"
        )
        execute_values(
            cur,
            "INSERT INTO customers (customer_id, name, city) VALUES %s",
            [(i, f"customer {i}", rng.choice(cities)) for i in range(1, customers + 1)],
        )
        execute_values(
            cur,
            "INSERT INTO orders VALUES %s",
            [
                (i, rng.randint(1, customers), round(rng.uniform(5, 500), 2), "placed", rng.randint(0, 60 * 24 * 30))
                for i in range(1, orders + 1)
            ],
            template="(%s, %s, %s, %s, now() - make_interval(mins => %s))",
        )


def change(round_number: int, seed_value: int = 11, *, database: str = DEMO_DATABASE) -> dict[str, int]:
    """Apply a round of inserts, updates (some changing the key) and deletes; return the rows each touched."""
    rng = random.Random(seed_value + round_number)
    touched = {}
    with closing(admin_connection(database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(order_id) FROM orders")
        top = cur.fetchone()[0]
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, 'placed', now())",
            [(top + i, rng.randint(1, 500), round(rng.uniform(5, 500), 2)) for i in range(1, 301)],
        )
        touched["inserted"] = 300
        cur.execute("UPDATE orders SET status = 'shipped' WHERE order_id %% 5 = %s", (round_number % 5,))
        touched["updated"] = cur.rowcount
        cur.execute("DELETE FROM orders WHERE order_id %% 97 = %s", (round_number % 97,))
        touched["deleted"] = cur.rowcount
        # Above every key there is (earlier rounds' moved keys and inserts included), so no key collides.
        cur.execute("UPDATE orders SET order_id = order_id + (SELECT max(order_id) FROM orders) "
                    "WHERE order_id %% 211 = %s", (round_number % 211,))
        touched["key_changed"] = cur.rowcount
        cur.execute("UPDATE customers SET city = 'Lugano' WHERE customer_id %% 50 = %s", (round_number,))
        touched["updated"] += cur.rowcount
    return touched


def table_rows(table: str, columns: list[str], *, database: str = DEMO_DATABASE) -> list[tuple]:
    with closing(admin_connection(database)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM {table}")
        return sorted(tuple(None if v is None else str(v) for v in row) for row in cur.fetchall())
