"""Demo order events as a streaming writer leaves them: many small Parquet files per day.

``<lake>/events/orders/event_date=YYYY-MM-DD/part-<n>.parquet`` with columns
``order_id, customer_id, product_id, amount, status, ordered_at`` (UTC). Deterministic for
a seed, so tests and the demo can recompute expectations.

With ``churn_signal=True`` customers differ in how often they order (gamma-distributed
rates) and a third of them stop ordering for good on a random day: past activity then
predicts whether a customer orders again, the planted signal of the churn example
(:mod:`include.demo.churn_labels`). The default stream is unchanged.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

TABLE = "events/orders"


def write_order_events(
    lake_root: Path,
    first_day: dt.date,
    days: int,
    *,
    events_per_day: int = 400,
    files_per_day: int = 20,
    customers: int = 200,
    seed: int = 3,
    churn_signal: bool = False,
) -> int:
    """Write ``days`` partitions of order events; return the number of events written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    written = 0
    statuses = np.array(["placed", "shipped", "returned"])
    behaviour = np.random.default_rng(seed + 1_000)
    rates = behaviour.gamma(0.7, 1.0, customers)
    stops = np.where(behaviour.random(customers) < 1 / 3, behaviour.integers(0, max(days, 1), customers), days + 1)
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        folder = lake_root / TABLE / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        seconds = np.sort(rng.integers(0, 86_400, events_per_day))
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        if churn_signal:
            active = np.where(stops > offset, rates, 0.0)
            buyers = behaviour.choice(customers, size=events_per_day, p=active / active.sum()) + 1
        else:
            buyers = rng.integers(1, customers + 1, events_per_day)
        table = pa.table(
            {
                "order_id": pa.array(np.arange(written, written + events_per_day), pa.int64()),
                "customer_id": pa.array(buyers, pa.int64()),
                "product_id": pa.array(rng.integers(1, 50, events_per_day), pa.int64()),
                "amount": pa.array(np.round(rng.gamma(2.0, 40.0, events_per_day), 2), pa.float64()),
                "status": pa.array(statuses[rng.integers(0, 3, events_per_day)]),
                "ordered_at": pa.array(
                    [start + dt.timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        for part, chunk in enumerate(np.array_split(np.arange(events_per_day), files_per_day)):
            pq.write_table(table.take(pa.array(chunk)), folder / f"part-{part:05d}.parquet")
        written += events_per_day
    return written
