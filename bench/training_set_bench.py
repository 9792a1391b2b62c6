"""Training-set build: dagfoundry's point-in-time join vs a hand-written DuckDB join (the floor).

1,000,000 labels over 10,000 entities against a 365-day feature view (one Parquet partition
per feature date). Both sides produce the same rows (checked). Peak memory is the process's
RSS high-water mark after each side (each side runs in its own process).
Feast's get_historical_features is NOT measured here yet (see README).

    .venv/bin/python bench/training_set_bench.py [--labels 1000000]
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


def write_data(base: Path, labels: int) -> None:
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
                      "f2": rng.integers(0, 50, len(ids))}).to_parquet(folder / "part-00000.parquet", index=False)
    seconds = rng.integers(0, (DAYS + 1) * 86_400, labels)
    pd.DataFrame({
        "customer_id": rng.integers(0, ENTITIES, labels).astype("int64"),
        "label_time": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
        "y": rng.integers(0, 2, labels),
    }).to_parquet(base / "labels.parquet", index=False)


def run_ours(base: Path) -> str:
    import pandas as pd

    from dagfoundry.features.training_set import join_point_in_time

    labels = pd.read_parquet(base / "labels.parquet")
    out = join_point_in_time(labels, base / "features" / "bench_view", view="bench_view",
                             entity_keys=["customer_id"], feature_names=["f1", "f2"])
    return f"{len(out)} {out['f1'].sum():.6f} {out['f2'].sum()}"


def run_floor(base: Path) -> str:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(f"""
        WITH labels AS (SELECT row_number() OVER () AS r, * FROM read_parquet('{base}/labels.parquet')),
        feats AS (SELECT *, CAST(feature_date AS DATE) + INTERVAL 1 DAY AS avail
                  FROM read_parquet('{base}/features/bench_view/*/*.parquet', hive_partitioning = true,
                                    hive_types = {{'feature_date': VARCHAR}})),
        dates AS (SELECT DISTINCT avail FROM feats),
        chosen AS (SELECT l.*, d.avail FROM labels l ASOF LEFT JOIN dates d ON l.label_time >= d.avail)
        SELECT count(*), sum(f.f1), sum(f.f2) FROM chosen c
        LEFT JOIN feats f ON f.customer_id = c.customer_id AND f.avail = c.avail
    """).fetchall()[0]
    return f"{row[0]} {row[1]:.6f} {row[2]}"


def child(side: str, base: Path) -> None:
    started = time.perf_counter()
    result = {"ours": run_ours, "floor": run_floor}[side](base)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "result": result}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory(prefix="tsbench-") as folder:
        base = Path(folder)
        write_data(base, args.labels)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
        figures = {}
        for side in ("floor", "ours"):
            done = subprocess.run([sys.executable, __file__, "--child", side, folder], env=env,
                                  capture_output=True, text=True, check=True)
            figures[side] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"labels {args.labels:,}, entities {ENTITIES:,}, feature dates {DAYS}; load average {os.getloadavg()}")
    for side, f in figures.items():
        print(f"{side:6s} {f['seconds']:7.2f} s  peak RSS {f['peak_mb']:7.0f} MB  result {f['result']}")
    print(f"ours / floor: {figures['ours']['seconds'] / figures['floor']['seconds']:.2f}x;"
          f" identical sums: {figures['ours']['result'] == figures['floor']['result']}")


if __name__ == "__main__":
    main()
