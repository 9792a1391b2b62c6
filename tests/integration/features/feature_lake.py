"""A small synthetic lake, a feature view over two sources, and a pandas brute-force reference."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, SqlFeature, WindowAggregate

FIRST_EVENT_DAY = dt.date(2024, 1, 1)
LAST_EVENT_DAY = dt.date(2024, 2, 10)
RANGE_START = "2024-01-20"
RANGE_END = "2024-02-05"
DAILY_DATES = ("2024-01-20", "2024-02-05")
RERUN_DATE = "2024-01-28"


def make_orders(seed: int = 7) -> pd.DataFrame:
    """Return random orders, with events exactly on midnight boundaries and some null amounts."""
    rng = np.random.default_rng(seed)
    n = 4000
    span = (LAST_EVENT_DAY - FIRST_EVENT_DAY).days + 1
    start = pd.Timestamp(FIRST_EVENT_DAY)
    seconds = rng.integers(0, span * 86400, n)
    # A tenth of the events sit exactly on a midnight: the cutoff boundary must exclude them.
    on_boundary = rng.random(n) < 0.1
    seconds = np.where(on_boundary, (seconds // 86400) * 86400, seconds)
    amount = rng.normal(12, 6, n).round(2)
    amount[rng.random(n) < 0.05] = np.nan
    orders = pd.DataFrame(
        {
            "user_id": rng.integers(0, 25, n).astype("int64"),
            "amount": amount,
            "quantity": rng.integers(1, 5, n).astype("int32"),
            "category": rng.choice(["books", "games", "food", "tools", "toys"], n),
            "ordered_at": start + pd.to_timedelta(seconds, unit="s"),
        }
    )
    # Duplicate timestamps for one user exercise the tie-break of `last`.
    orders.loc[1, ["user_id", "ordered_at"]] = orders.loc[0, ["user_id", "ordered_at"]].to_numpy()
    return orders


def make_sessions(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 1500
    span = (LAST_EVENT_DAY - FIRST_EVENT_DAY).days + 1
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n).astype("int64"),
            "duration_min": rng.integers(1, 120, n).astype("int64"),
            "started_at": pd.Timestamp(FIRST_EVENT_DAY) + pd.to_timedelta(rng.integers(0, span * 86400, n), unit="s"),
        }
    )


def write_orders(root: Path, orders: pd.DataFrame) -> None:
    """Write orders partitioned by event date (``event_date=YYYY-MM-DD``)."""
    for day, part in orders.groupby(orders["ordered_at"].dt.date):
        target = root / f"event_date={day.isoformat()}"
        target.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        pq.write_table(
            table.cast(
                table.schema.set(table.schema.get_field_index("ordered_at"), pa.field("ordered_at", pa.timestamp("us")))
            ),
            target / "part-0.parquet",
        )


def write_sessions(root: Path, sessions: pd.DataFrame) -> None:
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(sessions, preserve_index=False), root / "part-0.parquet")


def feature_view(orders_path: Path, sessions_path: Path, name: str = "user_activity") -> FeatureViewDefinition:
    return FeatureViewDefinition(
        name=name,
        entity_keys=("user_id",),
        sources=(
            SourceTable("orders", str(orders_path), "ordered_at", partition_column="event_date", on_missing="fail"),
            SourceTable("sessions", str(sessions_path), "started_at"),
        ),
        features=(
            WindowAggregate("orders_7d", "count", None, 7, source="orders"),
            WindowAggregate("amount_sum_7d", "sum", "amount", 7, source="orders"),
            WindowAggregate("amount_avg_30d", "avg", "amount", 30, source="orders"),
            WindowAggregate("amount_min_1d", "min", "amount", 1, source="orders"),
            WindowAggregate("amount_max_30d", "max", "amount", 30, source="orders"),
            WindowAggregate("last_category", "last", "category", 30, source="orders"),
            WindowAggregate("categories_7d", "count_distinct", "category", 7, source="orders"),
            WindowAggregate("big_orders_7d", "count", None, 7, filter_sql="amount > 15", source="orders"),
            WindowAggregate("quantity_sum_7d", "sum", "quantity", 7, source="orders"),
            WindowAggregate("revenue_7d", "sum", None, 7, expression="amount * quantity", source="orders"),
            WindowAggregate("sessions_7d", "count", None, 7, source="sessions"),
            WindowAggregate("longest_session_7d", "max", "duration_min", 7, source="sessions"),
            SqlFeature("avg_order_7d", "amount_sum_7d / nullif(orders_7d, 0)"),
        ),
        ttl_days=14,
    )


def reference_features(
    orders: pd.DataFrame, sessions: pd.DataFrame, feature_date: str, ttl_days: int = 14
) -> pd.DataFrame:
    """Compute the view's features for one date by brute force over the raw events."""
    cutoff = pd.Timestamp(feature_date) + pd.Timedelta(days=1)

    def window(frame: pd.DataFrame, column: str, days: int) -> pd.DataFrame:
        return frame[(frame[column] < cutoff) & (frame[column] >= cutoff - pd.Timedelta(days=days))]

    active = sorted(
        set(window(orders, "ordered_at", ttl_days)["user_id"])
        | set(window(sessions, "started_at", ttl_days)["user_id"])
    )
    rows = []
    for user in active:
        o7 = window(orders, "ordered_at", 7).query("user_id == @user")
        o30 = window(orders, "ordered_at", 30).query("user_id == @user")
        o1 = window(orders, "ordered_at", 1).query("user_id == @user")
        s7 = window(sessions, "started_at", 7).query("user_id == @user")
        amounts30 = o30["amount"].dropna()
        last = o30.sort_values(["ordered_at", "category"]).tail(1)["category"]
        revenue = (o7["amount"] * o7["quantity"]).dropna()
        rows.append(
            {
                "user_id": user,
                "orders_7d": len(o7),
                "amount_sum_7d": o7["amount"].sum() if o7["amount"].notna().any() else None,
                "amount_avg_30d": amounts30.mean() if len(amounts30) else None,
                "amount_min_1d": o1["amount"].min() if o1["amount"].notna().any() else None,
                "amount_max_30d": amounts30.max() if len(amounts30) else None,
                "last_category": last.iloc[0] if len(last) else None,
                "categories_7d": o7["category"].nunique(),
                "big_orders_7d": int((o7["amount"] > 15).sum()),
                "quantity_sum_7d": int(o7["quantity"].sum()) if len(o7) else None,
                "revenue_7d": revenue.sum() if len(revenue) else None,
                "sessions_7d": len(s7),
                "longest_session_7d": int(s7["duration_min"].max()) if len(s7) else None,
            }
        )
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["avg_order_7d"] = frame["amount_sum_7d"] / frame["orders_7d"].where(frame["orders_7d"] != 0)
    return frame


def build_lake(root: Path, orders: pd.DataFrame, sessions: pd.DataFrame) -> FeatureViewDefinition:
    """Write the sources under ``root`` and return the view reading them."""
    if root.exists():
        shutil.rmtree(root)
    write_orders(root / "mirror" / "orders", orders)
    write_sessions(root / "mirror" / "sessions", sessions)
    return feature_view(root / "mirror" / "orders", root / "mirror" / "sessions")
