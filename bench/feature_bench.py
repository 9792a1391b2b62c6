"""Benchmark the feature job on both engines and against a hand-written DuckDB floor.

Usage: ``python bench/feature_bench.py [--events 5000000] [--entities 10000] [--sample-days 5]
[--engines duckdb,spark] [--no-floor]``

Generates about 5 million events over 365 days (numpy + pyarrow, partitioned by event
date), computes a feature view of 11 window features (1, 7 and 30 days; count, sum, avg,
min, max, last, count distinct, a filtered count) for all 365 feature dates in ONE job on each
engine (DuckDB in process, Spark local mode through spark-submit), then runs single-day jobs
for a sample of dates and scales their mean time to 365 days (running all 365 would take
hours; the output says so). It checks that each sampled day's partition is byte-identical to
the chunked run's, and that both engines published the same bytes.

The floor (:func:`floor_query`) is one hand-written DuckDB query computing the same rows for
this view only; its rows are checked equal to ours by value. Every side (floor, each
engine's chunked job, each engine's daily runs) runs in a process of its own
(``bench/measured.py``), which reports wall and CPU seconds and peak RSS; the load average
is printed beside the figures.
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

from bench.measured import load_average, run_measured  # noqa: E402
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


def floor_query(source: Path, first: dt.date, last: dt.date) -> str:
    """Return the hand-written DuckDB query computing :func:`feature_view`'s rows for ``[first, last]``.

    What an engineer would write for this one view, knowing its data: daily partials per
    (user, day), a dense (user, day) series, ``ROWS`` frames of 1, 7 and 30 days, the
    distinct categories as DuckDB's ``count(DISTINCT ...)`` over a 7-day ``RANGE`` frame of the
    (user, day, category) sightings plus the dense days, the entities active within the TTL
    (30 days: ``events_30d > 0``). Float sums are DuckDB's
    own ``SUM`` (no fixed summation order), so its values equal ours up to rounding, not
    bit for bit.
    """
    start = first - dt.timedelta(days=29)
    frames = {w: f"(PARTITION BY user_id ORDER BY day ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW)" for w in (1, 7, 30)}
    return f"""
        WITH ev AS (
            SELECT user_id, CAST(event_time AS TIMESTAMP) AS ts, CAST(event_time AS DATE) AS day, amount, category
            FROM read_parquet('{source}/**/*.parquet', hive_partitioning = true)
            WHERE event_date BETWEEN '{start}' AND '{last}'),
        daily AS (
            SELECT user_id, day, count(*) AS n, sum(amount) AS s, min(amount) AS lo, max(amount) AS hi,
                   count(*) FILTER (WHERE amount > 100) AS big, max({{'t': ts, 'v': category}}) AS latest
            FROM ev GROUP BY user_id, day),
        dense AS (
            SELECT u.user_id, d.day, daily.* EXCLUDE (user_id, day)
            FROM (SELECT DISTINCT user_id FROM daily) u
            CROSS JOIN (SELECT CAST(range AS DATE) AS day FROM range(DATE '{start}', DATE '{last}' + 1, INTERVAL 1 DAY)) d
            LEFT JOIN daily USING (user_id, day)),
        seen AS (
            SELECT user_id, day, category FROM (SELECT DISTINCT user_id, day, category FROM ev)
            UNION ALL SELECT user_id, day, NULL FROM dense),
        distinct_7d AS (
            SELECT user_id, day, count(DISTINCT category) OVER (PARTITION BY user_id ORDER BY day
                RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW) AS categories_7d, category IS NULL AS on_grid
            FROM seen),
        framed AS (
            SELECT user_id, day,
                COALESCE(sum(n) OVER w1, 0) AS events_1d, COALESCE(sum(n) OVER w7, 0) AS events_7d,
                COALESCE(sum(n) OVER w30, 0) AS events_30d, sum(s) OVER w7 AS amount_sum_7d,
                sum(s) OVER w30 AS amount_sum_30d, sum(s) OVER w30 / sum(n) OVER w30 AS amount_avg_30d,
                min(lo) OVER w7 AS amount_min_7d, max(hi) OVER w7 AS amount_max_7d,
                (max(latest) OVER w30).v AS last_category,
                COALESCE(sum(big) OVER w7, 0) AS big_7d
            FROM dense
            WINDOW w1 AS {frames[1]}, w7 AS {frames[7]}, w30 AS {frames[30]})
        SELECT framed.* EXCLUDE (day, big_7d), categories_7d, big_7d, day AS feature_date
        FROM framed JOIN (SELECT user_id, day, categories_7d FROM distinct_7d WHERE on_grid) USING (user_id, day)
        WHERE day BETWEEN DATE '{first}' AND DATE '{last}' AND events_30d > 0
    """


def run_floor(source: str, output: str) -> dict:
    """Run the floor query and write its rows to ``output`` (one Parquet file); return the row count."""
    import duckdb

    first, last = FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS - 1)
    con = duckdb.connect()
    con.execute(f"COPY ({floor_query(Path(source), first, last)}) TO '{output}' (FORMAT parquet)")
    return {"rows": con.execute(f"SELECT count(*) FROM '{output}'").fetchone()[0]}


def floor_mismatches(floor_file: Path, lake: Path, view: str) -> dict:
    """Compare the floor's rows with ours (published partitions) by value: floats to 1e-9 relative.

    :return: ``{"ours": rows, "floor": rows, "differ": rows that differ, "max_rel": largest relative float difference}``
    """
    import duckdb

    names = [f.name for f in feature_view(Path(".")).features]
    floats = {"amount_sum_7d", "amount_sum_30d", "amount_avg_30d", "amount_min_7d", "amount_max_7d"}
    rel = " , ".join(f"abs(o.{n} - f.{n}) / greatest(abs(o.{n}), 1e-300)" for n in sorted(floats))
    differs = " OR ".join(
        f"(o.{n} IS NULL) <> (f.{n} IS NULL) OR abs(o.{n} - f.{n}) > 1e-9 * greatest(abs(o.{n}), 1)" if n in floats
        else f"o.{n} IS DISTINCT FROM f.{n}" for n in names
    )
    con = duckdb.connect()
    con.execute(f"CREATE VIEW o AS SELECT * FROM read_parquet('{offline_path(lake, view)}/*/{PART_FILE}', "
                "hive_partitioning = true, hive_types = {'feature_date': DATE})")
    con.execute(f"CREATE VIEW f AS SELECT * FROM '{floor_file}'")
    ours, floor = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("o", "f"))
    differ, max_rel = con.execute(
        f"SELECT count(*) FILTER (WHERE o.user_id IS NULL OR f.user_id IS NULL OR {differs}), "
        f"max(greatest({rel})) FROM o FULL JOIN f USING (user_id, feature_date)"
    ).fetchone()
    return {"ours": ours, "floor": floor, "differ": differ, "max_rel": max_rel or 0.0}


def count_rows(lake: Path, view: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in offline_path(lake, view).glob(f"feature_date=*/{PART_FILE}"))


def _digests(lake: Path, view: str) -> dict[str, str]:
    import hashlib

    return {p.parent.name.split("=", 1)[1]: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(offline_path(lake, view).glob(f"feature_date=*/{PART_FILE}"))}


def run_chunked(engine: str, source: str, lake: str) -> dict:
    """Compute the 365 feature dates in one job on ``engine``; return the rows and each partition's digest."""
    defn = feature_view(Path(source))
    first, last = FIRST_DAY, FIRST_DAY + dt.timedelta(days=DAYS - 1)
    compute_feature_range(defn, lake, first, last, engine=engine, conf=SPARK_CONF if engine == "spark" else None)
    return {"rows": count_rows(Path(lake), defn.name), "digests": _digests(Path(lake), defn.name)}


def run_daily(engine: str, source: str, lake: str, sample_days: int) -> dict:
    """Re-run ``sample_days`` single dates over the chunked run's lake; return their mean and whether bytes match."""
    defn = feature_view(Path(source))
    chunked = _digests(Path(lake), defn.name)
    step = DAYS // sample_days
    sample = [FIRST_DAY + dt.timedelta(days=step // 2 + i * step) for i in range(sample_days)]
    seconds = []
    for day in sample:
        started = time.perf_counter()
        compute_feature_range(defn, lake, day, day, engine=engine, conf=SPARK_CONF if engine == "spark" else None)
        seconds.append(time.perf_counter() - started)
    again = _digests(Path(lake), defn.name)
    return {"daily_mean": sum(seconds) / len(seconds), "identical": all(again[d.isoformat()] == chunked[d.isoformat()]
                                                                       for d in sample)}


def _figures(side: dict) -> str:
    return f"{side['wall']:.1f} s wall, {side['cpu']:.1f} CPU-s, peak RSS {side['peak_mib']:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--sample-days", type=int, default=5)
    parser.add_argument("--engines", default="duckdb,spark", help="comma-separated: duckdb, spark")
    parser.add_argument("--no-floor", action="store_true", help="skip the hand-written DuckDB floor")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given; a temp dir otherwise")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dagfoundry-feature-bench-"))
    source = work / "source" / "events"
    started = time.perf_counter()
    if not source.is_dir():
        generate_events(source, args.events, args.entities)
    print(f"generated {args.events:,} events for {args.entities:,} entities in {time.perf_counter() - started:.1f} s")
    view = feature_view(source).name
    floor = None
    if not args.no_floor:
        floor_file = work / "floor.parquet"
        floor = run_measured("bench.feature_bench:run_floor", {"source": str(source), "output": str(floor_file)})
        print(f"floor: 365 feature dates in one hand-written DuckDB query {_figures(floor)}, "
              f"{floor['result']['rows']:,} rows; load average {load_average()}", flush=True)
    figures = {}
    for engine in args.engines.split(","):
        lake = work / f"lake-{engine}"
        shutil.rmtree(lake, ignore_errors=True)
        kwargs = {"engine": engine, "source": str(source), "lake": str(lake)}
        chunked = run_measured("bench.feature_bench:run_chunked", kwargs)
        daily = run_measured("bench.feature_bench:run_daily", {**kwargs, "sample_days": args.sample_days})
        figures[engine] = {**chunked, **daily["result"], "lake": lake}
        d = daily["result"]
        print(
            f"{engine}: 365 feature dates in one job {_figures(chunked)}, {chunked['result']['rows']:,} rows; "
            f"one day {d['daily_mean']:.1f} s (mean of {args.sample_days}), day by day ~{d['daily_mean'] * DAYS:.0f} s "
            f"({d['daily_mean'] * DAYS / chunked['wall']:.1f}x the chunked run); daily == chunked bytes: "
            f"{d['identical']}; load average {load_average()}",
            flush=True,
        )
        if floor is not None:
            same = floor_mismatches(work / "floor.parquet", lake, view)
            f = figures[engine]
            goal = " (goal <= 2x on the embedded engine)" if engine == "duckdb" else ""
            print(f"{engine} / floor: {f['wall'] / floor['wall']:.2f}x wall{goal}, {f['cpu'] / floor['cpu']:.2f}x CPU, "
                  f"{f['peak_mib'] / floor['peak_mib']:.2f}x peak RSS; rows {same['ours']:,} vs the floor's "
                  f"{same['floor']:,}, {same['differ']:,} differ (floats to 1e-9 relative; largest difference "
                  f"{same['max_rel']:.1e})", flush=True)
            if same["differ"] or same["ours"] != same["floor"]:
                sys.exit(f"{engine} and the floor computed different rows")
    if {"duckdb", "spark"} <= figures.keys():
        duck, spark = figures["duckdb"], figures["spark"]
        same = duck["result"]["digests"] == spark["result"]["digests"]
        print(f"spark / duckdb wall: {spark['wall'] / duck['wall']:.1f}x, CPU: {spark['cpu'] / duck['cpu']:.1f}x, "
              f"peak RSS: {spark['peak_mib'] / duck['peak_mib']:.1f}x; partitions byte-identical across engines: {same}")
        if not same:
            sys.exit("the engines published different partitions")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    if not all(f["identical"] for f in figures.values()):
        sys.exit("daily and chunked partitions differ")


if __name__ == "__main__":
    main()
