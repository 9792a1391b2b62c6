"""Demo order events as a streaming writer leaves them: many small Parquet files per day.

``<lake>/events/orders/event_date=YYYY-MM-DD/part-<n>.parquet`` with columns
``order_id, customer_id, product_id, amount, status, ordered_at`` (UTC). Deterministic for
a seed, so tests and the demo can recompute expectations.
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
) -> int:
    """Write ``days`` partitions of order events; return the number of events written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    written = 0
    statuses = np.array(["placed", "shipped", "returned"])
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        folder = lake_root / TABLE / f"event_date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        seconds = np.sort(rng.integers(0, 86_400, events_per_day))
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        table = pa.table(
            {
                "order_id": pa.array(np.arange(written, written + events_per_day), pa.int64()),
                "customer_id": pa.array(rng.integers(1, customers + 1, events_per_day), pa.int64()),
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
