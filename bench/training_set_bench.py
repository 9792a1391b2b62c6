"""Training-set build: dagfoundry's point-in-time join vs Feast and vs a hand-written DuckDB join.

1,000,000 labels over 10,000 entities against a 365-day feature view (one Parquet partition
per feature date, 8,000 entities a date). Three sides, each in its own process, on the same
files, producing the same rows (customer_id, label_time, y, f1, f2):

- ``floor``: a hand-written DuckDB ASOF join of the same files, rows in the labels' order;
- ``ours``: ``join_point_in_time`` (labels read into Arrow, result an Arrow table);
- ``feast``: Feast 0.67's ``get_historical_features`` with a ``FileSource`` (see
  bench/training_set_feast.py for how its TTL is chosen so its rows equal ours). Feast runs in
  its own venv, ``.bench-deps/feast-venv``, made on first use from ``bench/requirements-feast.txt``
  (its pins clash with the project's).

Each side's time covers reading the labels and building the joined rows in memory; its peak
memory is its process's RSS high-water mark (``getrusage``). Every side writes its rows to
Parquet afterwards (not timed); the rows are compared sorted, and mismatches counted.

    .venv/bin/python bench/training_set_bench.py [--labels 1000000] [--feast-store duckdb|file] [--without-feast]

``--without-feast`` runs the floor and ours only (no Feast venv needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTITIES, DAYS = 10_000, 365
FEAST_VENV = ROOT / ".bench-deps" / "feast-venv"
FEAST_PINS = ROOT / "bench" / "requirements-feast.txt"
COLUMNS = ["customer_id", "label_time", "y", "f1", "f2"]


def write_data(base: Path, labels: int) -> None:
    """Write the feature view's partitions and the labels (label times in whole seconds, UTC).

    Each partition also carries ``available_at`` (its date + 1 day, 00:00 UTC): the event
    timestamp a Feast ``FileSource`` needs; ours and the floor read the date from the path.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    offline = base / "features" / "bench_view"
    for offset in range(DAYS):
        day = dt.date(2024, 1, 1) + dt.timedelta(days=offset)
        folder = offline / f"feature_date={day}"
        folder.mkdir(parents=True)
        ids = np.sort(rng.choice(ENTITIES, size=ENTITIES * 4 // 5, replace=False))
        pd.DataFrame({"customer_id": ids.astype("int64"), "f1": rng.random(len(ids)),
                      "f2": rng.integers(0, 50, len(ids)),
                      "available_at": pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")},
                     ).to_parquet(folder / "part-00000.parquet", index=False)
    seconds = rng.integers(0, (DAYS + 1) * 86_400, labels)
    pd.DataFrame({
        "customer_id": rng.integers(0, ENTITIES, labels).astype("int64"),
        "label_time": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
        "y": rng.integers(0, 2, labels),
    }).to_parquet(base / "labels.parquet", index=False)


def run_ours(base: Path):
    import pyarrow.parquet as pq

    from dagfoundry.features.training_set import join_point_in_time

    labels = pq.read_table(base / "labels.parquet")
    return join_point_in_time(labels, base / "features" / "bench_view", view="bench_view",
                              entity_keys=["customer_id"], feature_names=["f1", "f2"])


def run_floor(base: Path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(f"""
        WITH labels AS (SELECT row_number() OVER () AS r, * FROM read_parquet('{base}/labels.parquet')),
        feats AS (SELECT customer_id, f1, f2, CAST(feature_date AS DATE) + INTERVAL 1 DAY AS avail
                  FROM read_parquet('{base}/features/bench_view/*/*.parquet', hive_partitioning = true,
                                    hive_types = {{'feature_date': VARCHAR}})),
        dates AS (SELECT DISTINCT avail FROM feats),
        chosen AS (SELECT l.*, d.avail FROM labels l ASOF LEFT JOIN dates d ON l.label_time >= d.avail)
        SELECT c.customer_id, c.label_time, c.y, f.f1, f.f2 FROM chosen c
        LEFT JOIN feats f ON f.customer_id = c.customer_id AND f.avail = c.avail
        ORDER BY c.r
    """).to_arrow_table()


def child(side: str, base: Path, result: Path) -> None:
    import pyarrow.parquet as pq

    started = time.perf_counter()
    rows = {"ours": run_ours, "floor": run_floor}[side](base)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pq.write_table(rows.select(COLUMNS), result)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "rows": rows.num_rows}))


def feast_python() -> Path:
    """Return Feast's venv interpreter, making the venv from the pinned requirements on first use."""
    python = FEAST_VENV / "bin" / "python"
    check = [str(python), "-c", "import feast, duckdb, ibis"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {FEAST_VENV} from {FEAST_PINS.relative_to(ROOT)} (once, a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(FEAST_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(FEAST_PINS)], check=True)
    return python


def mismatches(results: Path, a: str, b: str) -> tuple[int, int, int]:
    """Return (rows of a, rows of b, rows that differ) with both sides sorted on every column."""
    import duckdb

    def ordered(side: str) -> str:
        return (f"SELECT row_number() OVER (ORDER BY customer_id, label_time, y, f1 NULLS FIRST, f2 NULLS FIRST)"
                f" AS k, customer_id, CAST(label_time AS TIMESTAMPTZ) AS t, y, CAST(f1 AS DOUBLE) AS f1,"
                f" CAST(f2 AS BIGINT) AS f2 FROM read_parquet('{results / side}.parquet')")

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.sql(f"""
        WITH a AS ({ordered(a)}), b AS ({ordered(b)})
        SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), count(*) FROM a FULL JOIN b USING (k)
        WHERE a.customer_id IS DISTINCT FROM b.customer_id OR a.t IS DISTINCT FROM b.t
           OR a.y IS DISTINCT FROM b.y OR a.f1 IS DISTINCT FROM b.f1 OR a.f2 IS DISTINCT FROM b.f2
    """).fetchall()[0]
    return int(row[0]), int(row[1]), int(row[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--feast-store", choices=["duckdb", "file"], default="duckdb",
                        help="Feast's offline store over the FileSource: its DuckDB one or its default dask one")
    parser.add_argument("--without-feast", action="store_true", help="run the floor and ours only")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    python = None if args.without_feast else feast_python()
    with tempfile.TemporaryDirectory(prefix="tsbench-") as folder:
        base = Path(folder)
        write_data(base, args.labels)
        results = base / "results"
        results.mkdir()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
        figures = {}
        for side in ("floor", "ours"):
            done = subprocess.run([sys.executable, __file__, "--child", side, folder, str(results / f"{side}.parquet")],
                                  env=env, capture_output=True, text=True, check=True)
            figures[side] = json.loads(done.stdout.strip().splitlines()[-1])
        if python is not None:
            done = subprocess.run([str(python), str(ROOT / "bench" / "training_set_feast.py"), folder,
                                   str(results / "feast.parquet"), "--store", args.feast_store],
                                  capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"Feast failed:\n{done.stderr[-4000:]}")
            figures["feast"] = json.loads(done.stdout.strip().splitlines()[-1])
        compared = {other: mismatches(results, "ours", other) for other in figures if other != "ours"}
    load = os.getloadavg()
    feast = figures.get("feast")
    print(f"labels {args.labels:,}, entities {ENTITIES:,}, feature dates {DAYS}; load average after "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          + (f"Feast {feast['version']}, offline store {feast['store']}" if feast else "Feast not run"))
    for side in figures:
        f = figures[side]
        print(f"{side:6s} {f['seconds']:7.2f} s  peak RSS {f['peak_mb']:7.0f} MB  rows {f['rows']:,}")
    for other, (ours_rows, their_rows, differ) in compared.items():
        print(f"ours vs {other}: {ours_rows:,} vs {their_rows:,} rows, {differ:,} differ after sorting")
    ours = figures["ours"]
    print(f"ours / floor: {ours['seconds'] / figures['floor']['seconds']:.2f}x time (target <= 1.5x), "
          f"{ours['peak_mb'] / figures['floor']['peak_mb']:.2f}x memory")
    if feast:
        print(f"feast / ours: {feast['seconds'] / ours['seconds']:.1f}x time (target >= 5x), "
              f"{feast['peak_mb'] / ours['peak_mb']:.1f}x memory")


if __name__ == "__main__":
    main()
