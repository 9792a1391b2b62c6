"""Feast's side of bench/training_set_bench.py: ``get_historical_features`` on the bench's files.

Runs in Feast's own venv (``.bench-deps/feast-venv``; Feast 0.67's pins clash with the
project's), started by training_set_bench.py as a subprocess; imports nothing of dagfoundry.

    feast-venv/bin/python bench/training_set_feast.py BASE RESULT.parquet [--store duckdb|file]

How the semantics are aligned with dagfoundry's join (latest feature date whose values
were complete by the label time, i.e. ``feature_date + 1 day <= label_time``; the entity's
row of that date, or nulls when it has none):

- every feature row carries ``available_at = feature_date + 1 day 00:00 UTC``, Feast's
  event timestamp: Feast only sees a row once its day is complete, as ours does;
- Feast takes the entity's latest row with ``label_time - ttl <= available_at <= label_time``.
  With ``ttl = 1 day - 1 µs`` that window holds exactly one midnight, the latest
  ``available_at`` at or before the label time, i.e. the feature date ours picks; when the
  entity has no row that date, the window holds none of its rows and Feast yields nulls, as
  ours does. (A longer TTL would fall back to older rows; ``ttl = 0`` means "no limit".)

Timed: reading the labels into the entity frame (Feast takes pandas) and
``get_historical_features(...).to_arrow()``. Not timed: the repo, ``apply``, writing the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--store", choices=["duckdb", "file"], default="duckdb")
    args = parser.parse_args()

    import pandas as pd
    import pyarrow.parquet as pq
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    with tempfile.TemporaryDirectory(prefix="feast-repo-") as repo:
        Path(repo, "feature_store.yaml").write_text(
            "project: tsbench\n"
            f"registry: {repo}/registry.db\n"
            "provider: local\n"
            f"online_store: {{type: sqlite, path: {repo}/online.db}}\n"
            f"offline_store: {{type: {args.store}}}\n"
            "entity_key_serialization_version: 3\n"
        )
        customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
        source = FileSource(name="bench_view_files", path=str(args.base / "features" / "bench_view" / "*" / "*.parquet"),
                            timestamp_field="available_at")
        view = FeatureView(name="bench_view", entities=[customer], source=source,
                           ttl=dt.timedelta(days=1) - dt.timedelta(microseconds=1),
                           schema=[Field(name="f1", dtype=Float64), Field(name="f2", dtype=Int64)])
        store = FeatureStore(repo_path=repo)
        store.apply([customer, view])

        started = time.perf_counter()
        labels = pd.read_parquet(args.base / "labels.parquet")
        rows = store.get_historical_features(entity_df=labels, features=["bench_view:f1", "bench_view:f2"]).to_arrow()
        seconds = time.perf_counter() - started
        peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        pq.write_table(rows.select(["customer_id", "label_time", "y", "f1", "f2"]), args.result)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "rows": rows.num_rows,
                      "version": sys.modules["feast"].__version__, "store": args.store}))


if __name__ == "__main__":
    main()
