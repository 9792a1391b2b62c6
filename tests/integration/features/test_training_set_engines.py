"""The point-in-time join on both engines: one query, the same rows, order and schema.

One offline store (two entity keys, dates with gaps, entities absent on some dates, a
string and a float feature) and one set of labels (before any complete date, on midnights,
after the last date, entities never seen) are joined on DuckDB in process and on real Spark
(local, through spark-submit); the results must be equal, and equal to a brute-force loop.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.features.compute import PART_FILE
from dagfoundry.features.training_set import TrainingSetError, join_point_in_time

pytestmark = pytest.mark.integration

KEYS = ["user_id", "region"]
FEATURES = ["clicks_7d", "spend_7d", "last_page"]
FIRST = dt.date(2024, 3, 1)
SPARK = {"conn_id": "spark_local", "conf": {"spark.sql.shuffle.partitions": "2"}}


def region_of(user: int) -> str:
    return "eu" if user % 3 else "us"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Write random partitions over 30 days (a fifth of the dates absent); return the folder and rows."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("pit") / "features" / "users"
    rows: dict[str, dict[tuple[int, str], tuple]] = {}
    for offset in range(30):
        if rng.random() < 0.2:
            continue
        day = (FIRST + dt.timedelta(days=offset)).isoformat()
        users = np.sort(rng.choice(25, size=int(rng.integers(0, 20)), replace=False))
        table = pa.table({
            "user_id": pa.array(users, pa.int64()),
            "region": [region_of(int(u)) for u in users],
            "clicks_7d": pa.array(rng.integers(0, 50, len(users)), pa.int64()),
            "spend_7d": pa.array(rng.normal(100, 30, len(users)), pa.float64()),
            "last_page": [f"p{int(rng.integers(0, 9))}" for _ in users],
        })
        (root / f"feature_date={day}").mkdir(parents=True)
        pq.write_table(table, root / f"feature_date={day}" / PART_FILE)
        rows[day] = {(r["user_id"], r["region"]): (r["clicks_7d"], r["spend_7d"], r["last_page"])
                     for r in table.to_pylist()}
    return root, rows


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(11)
    n = 600
    users = rng.integers(0, 28, n)  # users 25..27 never have a row
    seconds = rng.integers(-4 * 86400, 36 * 86400, n)
    seconds = np.where(rng.random(n) < 0.25, (seconds // 86400) * 86400, seconds)  # midnights
    times = np.datetime64(f"{FIRST}T00:00:00", "s") + seconds.astype("timedelta64[s]")
    return pa.table({
        "user_id": pa.array(users, pa.int64()),
        "region": [region_of(int(u)) for u in users],
        "label_time": pa.array(times.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
        "churned": pa.array(rng.integers(0, 2, n), pa.int8()),
    })


def brute_force(labels: pa.Table, rows: dict, lag_days: int) -> list[tuple]:
    """Per label: the latest date complete (date + 1 day 00:00 UTC) by label time - lag, then the entity's row."""
    out = []
    for label in labels.to_pylist():
        bound = label["label_time"] - dt.timedelta(days=lag_days)
        usable = [d for d in rows if dt.datetime.combine(dt.date.fromisoformat(d) + dt.timedelta(days=1),
                                                        dt.time(), tzinfo=dt.UTC) <= bound]
        if not usable:
            out.append((None, None, None, None))
            continue
        chosen = max(usable)
        values = rows[chosen].get((label["user_id"], label["region"]), (None, None, None))
        out.append((dt.date.fromisoformat(chosen), *values))
    return out


def join(labels, root, engine, lag_days):
    return join_point_in_time(labels, root, view="users", entity_keys=KEYS, feature_names=FEATURES,
                              lag_days=lag_days, engine=engine, spark=SPARK)


@pytest.mark.parametrize("lag_days", [0, 3])
def test_both_engines_join_the_same_rows_in_the_labels_order(store, labels, lag_days):
    root, rows = store
    duck, spark = join(labels, root, "duckdb", lag_days), join(labels, root, "spark", lag_days)

    assert duck.schema == spark.schema
    assert duck.column_names == [*labels.column_names, "feature_date", *FEATURES]
    assert duck.equals(spark)
    assert duck.select(labels.column_names).equals(labels)
    got = list(zip(*(duck.column(c).to_pylist() for c in ["feature_date", *FEATURES]), strict=True))
    want = brute_force(labels, rows, lag_days)
    assert got == want
    # The data reaches every case: matched rows, entities without a row, labels before any date.
    assert any(w[1] is not None for w in want) and any(w[0] and w[1] is None for w in want)
    assert any(w[0] is None for w in want)


def test_a_store_without_partitions_gives_null_features_whichever_engine(tmp_path, labels):
    duck, spark = join(labels, tmp_path, "duckdb", 0), join(labels, tmp_path, "spark", 0)
    assert duck.equals(spark)
    assert duck.column("feature_date").null_count == labels.num_rows


def test_an_unknown_engine_is_refused(store, labels):
    with pytest.raises(TrainingSetError, match="unknown engine 'flink'"):
        join(labels, store[0], "flink", 0)
