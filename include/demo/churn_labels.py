"""Churn labels of the demo shop, derived from the order events.

A label is observed on a label day ``d`` (``label_time`` = ``d`` 00:00 UTC) for every customer
who ordered in the 30 days before ``d``: ``churned`` = 1 when the customer places no order
in ``[d, d + horizon_days)``. Written to ``<lake>/labels/churn/part-0.parquet``. Features
of day ``d - 1`` (cutoff ``d`` 00:00) see only events before the label time: the label's
future never leaks into them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from include.demo.order_events import TABLE as ORDERS_TABLE

TABLE = "labels/churn"


def write_churn_labels(lake_root: Path, first_day: dt.date, last_day: dt.date, *, every_days: int = 7,
                       horizon_days: int = 14) -> int:
    """Write one label per active customer every ``every_days`` from ``first_day`` to ``last_day``; return rows."""
    import duckdb

    target = lake_root / TABLE
    target.mkdir(parents=True, exist_ok=True)
    query = f"""
        WITH orders AS (
            SELECT customer_id, ordered_at FROM read_parquet('{lake_root / ORDERS_TABLE}/*/*.parquet')
        ), days AS (
            SELECT CAST(d AS TIMESTAMPTZ) AS label_time
            FROM range(TIMESTAMP '{first_day}', TIMESTAMP '{last_day}' + INTERVAL 1 DAY,
                       INTERVAL {every_days} DAY) AS t(d)
        ), active AS (
            SELECT DISTINCT d.label_time, o.customer_id FROM days d JOIN orders o
              ON o.ordered_at >= d.label_time - INTERVAL 30 DAY AND o.ordered_at < d.label_time
        )
        SELECT a.customer_id, a.label_time,
               CAST(NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = a.customer_id
                     AND o.ordered_at >= a.label_time
                     AND o.ordered_at < a.label_time + INTERVAL {horizon_days} DAY) AS INTEGER) AS churned
        FROM active a ORDER BY a.label_time, a.customer_id
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.sql(query).write_parquet(str(target / "part-0.parquet"))
        return int(con.execute(f"SELECT count(*) FROM read_parquet('{target / 'part-0.parquet'}')").fetchall()[0][0])
