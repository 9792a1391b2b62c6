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


def recreate_database() -> None:
    """Drop the demo database (and the replication slots on it) and create it empty."""
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
                    (DEMO_DATABASE,))
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (DEMO_DATABASE,))
        for (slot,) in cur.fetchall():
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DEMO_DATABASE}")


def replication_slots() -> list[str]:
    """Return the names of the replication slots on the demo database."""
    with closing(admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (DEMO_DATABASE,))
        return [r[0] for r in cur.fetchall()]


def seed(customers: int = 500, orders: int = 5000, seed_value: int = 7) -> None:
    """Create the shop tables and fill them."""
    rng = random.Random(seed_value)
    cities = ["Zürich", "Genève", "Basel", "Lausanne", "Bern", None]
    with closing(admin_connection(DEMO_DATABASE)) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (customer_id int PRIMARY KEY, name text NOT NULL, city text,"
            " created_at timestamptz NOT NULL DEFAULT now());"
            "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2),"
            " status text NOT NULL, ordered_at timestamp NOT NULL);"
        )
        cur.executemany(
            "INSERT INTO customers (customer_id, name, city) VALUES (%s, %s, %s)",
            [(i, f"customer {i}", rng.choice(cities)) for i in range(1, customers + 1)],
        )
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s, now() - make_interval(mins => %s))",
            [
                (i, rng.randint(1, customers), round(rng.uniform(5, 500), 2), "placed", rng.randint(0, 60 * 24 * 30))
                for i in range(1, orders + 1)
            ],
        )


def change(round_number: int, seed_value: int = 11) -> None:
    """Apply a round of inserts, updates (some changing the key) and deletes."""
    rng = random.Random(seed_value + round_number)
    with closing(admin_connection(DEMO_DATABASE)) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(order_id) FROM orders")
        top = cur.fetchone()[0]
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, 'placed', now())",
            [(top + i, rng.randint(1, 500), round(rng.uniform(5, 500), 2)) for i in range(1, 301)],
        )
        cur.execute("UPDATE orders SET status = 'shipped' WHERE order_id %% 5 = %s", (round_number % 5,))
        cur.execute("DELETE FROM orders WHERE order_id %% 97 = %s", (round_number % 97,))
        cur.execute("UPDATE orders SET order_id = order_id + 1000000 WHERE order_id %% 211 = %s", (round_number,))
        cur.execute("UPDATE customers SET city = 'Lugano' WHERE customer_id %% 50 = %s", (round_number,))


def table_rows(table: str, columns: list[str]) -> list[tuple]:
    with closing(admin_connection(DEMO_DATABASE)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM {table}")
        return sorted(tuple(None if v is None else str(v) for v in row) for row in cur.fetchall())
