"""Training sets: the pandas as-of join equals a brute-force loop on random data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.features.compute import PART_FILE
from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, WindowAggregate
from dagfoundry.features.training_set import TrainingSetError, build_training_set

VIEW = FeatureViewDefinition(
    name="users",
    entity_keys=("user_id", "region"),
    sources=(SourceTable("events", "/unused", "ts"),),
    features=(WindowAggregate("clicks_7d", "count", None, 7), WindowAggregate("spend_7d", "sum", "spend", 7)),
)


def write_offline_store(root, rng) -> dict[str, pd.DataFrame]:
    """Write random partitions (some dates absent, random entity subsets); return them by date."""
    partitions = {}
    for offset in range(40):
        if rng.random() < 0.2:
            continue  # a skipped feature date
        feature_date = (dt.date(2024, 3, 1) + dt.timedelta(days=offset)).isoformat()
        users = np.sort(rng.choice(20, size=rng.integers(0, 15), replace=False))
        frame = pd.DataFrame(
            {
                "user_id": users.astype("int64"),
                "region": ["eu" if u % 3 else "us" for u in users],
                "clicks_7d": rng.integers(0, 50, len(users)).astype("int64"),
                "spend_7d": rng.normal(100, 30, len(users)),
            }
        )
        directory = root / f"feature_date={feature_date}"
        directory.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / PART_FILE)
        partitions[feature_date] = frame
    return partitions


def random_labels(rng, n=400) -> pd.DataFrame:
    users = rng.integers(0, 22, n)
    seconds = rng.integers(-3 * 86400, 45 * 86400, n)
    # A quarter of the labels sit exactly on a midnight, where the cutoff comparison matters.
    seconds = np.where(rng.random(n) < 0.25, (seconds // 86400) * 86400, seconds)
    return pd.DataFrame(
        {
            "user_id": users.astype("int64"),
            "region": ["eu" if u % 3 else "us" for u in users],
            "label_time": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "churned": rng.integers(0, 2, n),
        },
        index=pd.RangeIndex(1000, 1000 + n),
    )


def brute_force(labels: pd.DataFrame, partitions: dict[str, pd.DataFrame], lag_days: int) -> list[tuple]:
    """For each label: the latest date whose cutoff is <= label time - lag, then the entity's row."""
    results = []
    for _, label in labels.iterrows():
        bound = label["label_time"] - pd.Timedelta(days=lag_days)
        usable = [d for d in partitions if pd.Timestamp(d, tz="UTC") + pd.Timedelta(days=1) <= bound]
        if not usable:
            results.append((None, None, None))
            continue
        chosen = max(usable)
        frame = partitions[chosen]
        row = frame[(frame["user_id"] == label["user_id"]) & (frame["region"] == label["region"])]
        if row.empty:
            results.append((chosen, None, None))
        else:
            results.append((chosen, int(row["clicks_7d"].iloc[0]), float(row["spend_7d"].iloc[0])))
    return results


@pytest.mark.parametrize("lag_days", [0, 2])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_as_of_join_equals_a_brute_force_loop(tmp_path, seed, lag_days):
    rng = np.random.default_rng(seed)
    partitions = write_offline_store(tmp_path, rng)
    labels = random_labels(rng)
    result = build_training_set(labels, tmp_path, VIEW, lag_days=lag_days)

    assert list(result.index) == list(labels.index)
    pd.testing.assert_frame_equal(result[labels.columns], labels)
    got = [
        (
            None if pd.isna(r.feature_date) else r.feature_date,
            None if pd.isna(r.clicks_7d) else int(r.clicks_7d),
            None if pd.isna(r.spend_7d) else float(r.spend_7d),
        )
        for r in result.itertuples()
    ]
    want = brute_force(labels, partitions, lag_days)
    assert got == want
    # The data exercises every branch: matched rows, entities absent on the date, no date at all.
    assert any(w[1] is not None for w in want) and any(w[0] and w[1] is None for w in want)
    assert any(w[0] is None for w in want)


def test_labels_without_entity_columns_are_refused(tmp_path):
    labels = pd.DataFrame({"user_id": [1], "label_time": [pd.Timestamp("2024-03-05")]})
    with pytest.raises(TrainingSetError, match=r"lack column\(s\) \['region'\]"):
        build_training_set(labels, tmp_path, VIEW)


def test_null_label_times_are_refused(tmp_path):
    labels = pd.DataFrame({"user_id": [1], "region": ["eu"], "label_time": [pd.NaT]})
    with pytest.raises(TrainingSetError, match="null 'label_time'"):
        build_training_set(labels, tmp_path, VIEW)
