"""Benchmark the feature job on both engines: a chunked 365-day backfill against day-by-day runs.

Usage: ``python bench/feature_bench.py [--events 5000000] [--entities 10000] [--sample-days 5]
[--engines duckdb,spark]``

Generates about 5 million events over 365 days (numpy + pyarrow, partitioned by event
date), computes a feature view of 11 window features (1, 7 and 30 days; count, sum, avg,
min, max, last, count distinct, a filtered count) for all 365 feature dates in ONE job on each
engine (DuckDB in process, Spark local mode through spark-submit), then runs single-day jobs
for a sample of dates and scales their mean time to 365 days (running all 365 would take
hours; the output says so). It checks that each sampled day's partition is byte-identical to
the chunked run's, and that both engines published the same bytes; it prints wall and CPU
seconds of each engine, their ratio and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT / "plugins", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))
os.environ.setdefault("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[*]"}')
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dagfoundry-bench-airflow-"))

from dagfoundry.features.compute import PART_FILE, compute_feature_range, offline_path  # noqa: E402
from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, WindowAggregate  # noqa: E402

FIRST_DAY = dt.date(2023, 1, 1)
DAYS = 365
SPARK_CONF = {"spark.sql.shuffle.partitions": "8"}


def generate_events(target: Path, n_events: int, n_entities: int, seed: int = 42) -> None:
    """Write ``n_events`` random events over 365 days, one Parquet file per event date."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, DAYS * 86400, n_events))
    ts = np.datetime64(FIRST_DAY.isoformat(), "s") + seconds.astype("timedelta64[s]")
    categories = np.array([f"c{i:02d}" for i in range(20)])
    table = pa.table(
        {
            "user_id": rng.integers(0, n_entities, n_events),
            "amount": rng.gamma(2.0, 20.0, n_events).round(2),
            "category": pa.array(categories[rng.integers(0, 20, n_events)]),
            "event_time": pa.array(ts.astype("datetime64[us]")),
            "event_date": pa.array(ts.astype("datetime64[D]").astype(str)),
        }
    )
    ds.write_dataset(
        table,
        target,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("event_date", pa.string())]), flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )


def feature_view(source: Path) -> FeatureViewDefinition:
    windows = (
        WindowAggregate("events_1d", "count", None, 1),
        WindowAggregate("events_7d", "count", None, 7),
        WindowAggregate("events_30d", "count", None, 30),
        WindowAggregate("amount_sum_7d", "sum", "amount", 7),
        WindowAggregate("amount_sum_30d", "sum", "amount", 30),
        WindowAggregate("amount_avg_30d", "avg", "amount", 30),
        WindowAggregate("amount_min_7d", "min", "amount", 7),
        WindowAggregate("amount_max_7d", "max", "amount", 7),
        WindowAggregate("last_category", "last", "category", 30),
        WindowAggregate("categories_7d", "count_distinct", "category", 7),
        WindowAggregate("big_7d", "count", None, 7, filter_sql="amount > 100"),
    )
    return FeatureViewDefinition(
        name="bench_users",
        entity_keys=("user_id",),
        sources=(SourceTable("events", str(source), "event_time", partition_column="event_date"),),
        features=windows,
        ttl_days=30,
    )


def count_rows(lake: Path, view: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in offline_path(lake, view).glob(f"feature_date=*/{PART_FILE}"))


def timed(fn, *args, **kwargs):
    """Return ``(result, wall seconds, CPU seconds of this process and its children)``."""
    import resource

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall, before = time.perf_counter(), cpu()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu() - before


def run_engine(engine: str, defn: FeatureViewDefinition, lake: Path, sample_days: int) -> dict:
    """Backfill 365 dates in one job on ``engine``, then sampled single-day runs; return the figures."""
    first, last = FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS - 1)
    conf = SPARK_CONF if engine == "spark" else None
    chunked, seconds, cpu = timed(compute_feature_range, defn, lake, first, last, engine=engine, conf=conf)
    chunk_bytes = {
        d: (offline_path(lake, defn.name) / f"feature_date={d}" / PART_FILE).read_bytes() for d in chunked["published"]
    }
    step = DAYS // sample_days
    sample = [first + dt.timedelta(days=step // 2 + i * step) for i in range(sample_days)]
    daily_seconds, identical = [], True
    for day in sample:
        _, day_seconds, _ = timed(compute_feature_range, defn, lake, day, day, engine=engine, conf=conf)
        daily_seconds.append(day_seconds)
        published = (offline_path(lake, defn.name) / f"feature_date={day}" / PART_FILE).read_bytes()
        identical &= published == chunk_bytes[day.isoformat()]
    return {"seconds": seconds, "cpu": cpu, "rows": count_rows(lake, defn.name), "bytes": chunk_bytes,
            "daily_mean": sum(daily_seconds) / len(daily_seconds), "identical": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--sample-days", type=int, default=5)
    parser.add_argument("--engines", default="duckdb,spark", help="comma-separated: duckdb, spark")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given; a temp dir otherwise")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dagfoundry-feature-bench-"))
    source = work / "source" / "events"
    started = time.perf_counter()
    if not source.is_dir():
        generate_events(source, args.events, args.entities)
    print(f"generated {args.events:,} events for {args.entities:,} entities in {time.perf_counter() - started:.1f} s")
    defn = feature_view(source)
    figures = {}
    for engine in args.engines.split(","):
        lake = work / f"lake-{engine}"
        shutil.rmtree(lake, ignore_errors=True)
        figures[engine] = f = run_engine(engine, defn, lake, args.sample_days)
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{engine}: 365 feature dates in one job {f['seconds']:.1f} s wall, {f['cpu']:.1f} CPU-s, {f['rows']:,} rows; "
            f"one day {f['daily_mean']:.1f} s (mean of {args.sample_days}), day by day ~{f['daily_mean'] * DAYS:.0f} s "
            f"({f['daily_mean'] * DAYS / f['seconds']:.1f}x the chunked run); daily == chunked bytes: {f['identical']}; "
            f"load average {load} on {os.cpu_count()} cores",
            flush=True,
        )
    if {"duckdb", "spark"} <= figures.keys():
        duck, spark = figures["duckdb"], figures["spark"]
        same = duck["bytes"] == spark["bytes"]
        print(f"spark / duckdb wall: {spark['seconds'] / duck['seconds']:.1f}x, CPU: {spark['cpu'] / duck['cpu']:.1f}x; "
              f"partitions byte-identical across engines: {same}")
        if not same:
            sys.exit("the engines published different partitions")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if not all(f["identical"] for f in figures.values()):
        sys.exit("daily and chunked partitions differ")


if __name__ == "__main__":
    main()
