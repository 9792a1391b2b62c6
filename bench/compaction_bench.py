"""Benchmark: compaction (plan, rewrite, verify, atomic publish) against a bare rewrite of the
same data on the same engine (no verification, no publishing: the ceiling), for each engine.

    python bench/compaction_bench.py [--gb 1.0] [--files 10000] [--partitions 5] [--target-mb 128] [--rounds 2]
        [--engines duckdb,spark]

On ``duckdb`` the bare side is a plain DuckDB ``COPY`` of each partition's files into files of
the target size, in this process; on ``spark`` it is a bare Spark read-and-write (below).

Data: ``--files`` small Parquet files (about ``--gb`` in total) over ``--partitions``
partitions, generated with pyarrow once and reused (``--data-dir``). Prints MB/s of both,
their ratio (target >= 0.8), and the files after compaction against the ideal count.

Both sides are one ``spark-submit`` of the same Spark connection (``local[2]``), with the same
Spark settings and the same number of partitions rewritten at once. Rounds alternate which side
runs first, so a load change on a shared machine hits both; the ratio is total against total.
CPU seconds (this process and its children: spark-submit, the JVM, the Python driver) are
printed beside the wall time because they depend far less on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
os.environ.setdefault("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[2]"}')
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))
TABLE = "bench/events"


def generate(source: Path, *, total_bytes: int, files: int, partitions: int) -> None:
    """Write ``files`` Parquet files of random rows, about ``total_bytes`` in all."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    rows = max(1, int(total_bytes / files / 26))  # about 26 compressed bytes per row
    categories = pa.array([f"category-{i}" for i in range(50)])
    next_id = 0
    for index in range(files):
        directory = source / TABLE / f"dt=2024-03-{1 + index % partitions:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "id": pa.array(np.arange(next_id, next_id + rows, dtype=np.int64)),
            "ts": pa.array(rng.integers(1_700_000_000_000, 1_710_000_000_000, rows)),
            "value": pa.array(rng.random(rows)),
            "score": pa.array(rng.random(rows, dtype=np.float32)),
            "category": categories.take(pa.array(rng.integers(0, 50, rows))),
        })
        pq.write_table(table, directory / f"part-{index:06d}.parquet", compression="snappy")
        next_id += rows
    (source / "_complete").write_text(json.dumps({"files": files, "partitions": partitions}))


def tree_bytes(directory: Path) -> tuple[int, int]:
    sizes = [p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))]
    return len(sizes), sum(sizes)


def warm_cache(directory: Path) -> None:
    for path in directory.rglob("*.parquet"):
        path.read_bytes()


def cpu_seconds() -> float:
    """Return the CPU time of this process and of its finished children, in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_bare(source: Path, work: Path, target_bytes: int) -> float:
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from dagfoundry.spark_submit import DEFAULT_SPARK_CONF, spark_environment

    jobs = []
    for partition in sorted((source / TABLE).iterdir()):
        _, size = tree_bytes(partition)
        jobs.append({"input": str(partition), "output": str(work / "bare" / partition.name),
                     "target": max(1, math.ceil(size / target_bytes))})
    jobs_file = work / "bare-jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    os.environ.update(spark_environment())
    hook = SparkSubmitHook(conf=dict(DEFAULT_SPARK_CONF), conn_id="spark_local", name="bench-bare",
                           application_args=[str(jobs_file)], env_vars=spark_environment())
    started = time.monotonic()
    hook.submit(str(Path(__file__).with_name("bare_rewrite_app.py")))
    return time.monotonic() - started


def run_bare_duckdb(source: Path, work: Path, target_bytes: int) -> float:
    """Rewrite each partition with one plain DuckDB COPY into files of about the target size."""
    import duckdb

    started = time.monotonic()
    conn = duckdb.connect()
    for partition in sorted((source / TABLE).iterdir()):
        out = work / "bare" / partition.name
        out.parent.mkdir(parents=True, exist_ok=True)
        conn.execute(f"COPY (SELECT * FROM read_parquet('{partition}/*.parquet')) TO '{out}' "
                     f"(FORMAT parquet, COMPRESSION snappy, FILE_SIZE_BYTES {target_bytes}, PER_THREAD_OUTPUT false)")
    conn.close()
    return time.monotonic() - started


def run_compaction(source: Path, work: Path, target_bytes: int, engine: str = "spark") -> tuple[float, dict, dict]:
    from dagfoundry.compaction import CompactionSettings, plan_step, publish_step, report_step
    from dagfoundry.compaction.duckdb_rewrite import rewrite_batch
    from dagfoundry.spark_submit import submit_spark_app

    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    subprocess.run(["cp", "-al", str(source), str(lake)], check=True)  # hard links: no copy cost
    settings = CompactionSettings(lake_root=lake, tables=(TABLE,), target_file_bytes=target_bytes,
                                  closed_after_seconds=0, max_partitions_per_batch=64)
    started = time.monotonic()
    plan = plan_step(settings, version="bench")
    planned = time.monotonic()
    if engine == "duckdb":
        for batch_file in plan["batch_files"]:
            rewrite_batch(batch_file)
    else:
        submit_spark_app("compaction_rewrite", [f for args in plan["spark_args"] for f in args])
    rewritten = time.monotonic()
    for batch_file in plan["batch_files"]:
        publish_step(batch_file)
    published = time.monotonic()
    phases = {"plan": planned - started, engine: rewritten - planned, "publish": published - rewritten}
    return published - started, phases, report_step(settings, version="bench")["summary"]


def measure(run, *args):
    """Run ``run(*args)``; return its wall seconds, CPU seconds and whatever else it returned."""
    cpu = cpu_seconds()
    outcome = run(*args)
    outcome = outcome if isinstance(outcome, tuple) else (outcome,)
    return (outcome[0], cpu_seconds() - cpu, *outcome[1:])


def run_rounds(source: Path, work: Path, target: int, rounds: int, engine: str) -> tuple[list, list, dict]:
    """Alternate bare and compaction runs; return their (wall, cpu) figures and the last summary."""
    bare, ours, summary = [], [], {}
    for index in range(rounds):
        for side in ("bare", "ours") if index % 2 == 0 else ("ours", "bare"):
            warm_cache(source)
            shutil.rmtree(work / "bare", ignore_errors=True)
            if side == "bare":
                bare.append(measure(run_bare_duckdb if engine == "duckdb" else run_bare, source, work, target))
                print(f"round {index + 1} bare: {bare[-1][0]:.1f} s wall, {bare[-1][1]:.1f} s CPU", flush=True)
            else:
                wall, cpu, phases, summary = measure(run_compaction, source, work, target, engine)
                ours.append((wall, cpu))
                steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
                print(f"round {index + 1} compaction: {wall:.1f} s wall ({steps}), {cpu:.1f} s CPU", flush=True)
    return bare, ours, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=5)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating which goes first")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "dagfoundry-compaction-bench")
    parser.add_argument("--engines", default="duckdb,spark", help="comma-separated: duckdb, spark")
    args = parser.parse_args()
    source = args.data_dir / f"source-{args.gb}gb-{args.files}f-{args.partitions}p"
    if not (source / "_complete").exists():
        shutil.rmtree(source, ignore_errors=True)
        started = time.monotonic()
        generate(source, total_bytes=int(args.gb * 1024**3), files=args.files, partitions=args.partitions)
        print(f"generated {args.files} files in {time.monotonic() - started:.0f}s")
    files, size = tree_bytes(source)
    target = args.target_mb * 1024 * 1024
    print(f"input: {files} files, {size / 1024**2:.0f} MB in {args.partitions} partitions, target {args.target_mb} MB, "
          f"{args.rounds} round(s) each side")
    for engine in args.engines.split(","):
        work = Path(tempfile.mkdtemp(prefix="run-", dir=args.data_dir))
        try:
            bare_runs, our_runs, summary = run_rounds(source, work, target, args.rounds, engine)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report(engine, size, bare_runs, our_runs, summary)


def report(engine: str, size: int, bare_runs: list, our_runs: list, summary: dict) -> None:
    mb = size / 1024**2
    bare_wall, bare_cpu = (sum(run[i] for run in bare_runs) for i in (0, 1))
    ours_wall, ours_cpu = (sum(run[i] for run in our_runs) for i in (0, 1))
    ours, bare = mb * len(our_runs) / ours_wall, mb * len(bare_runs) / bare_wall
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    bare_name = "bare DuckDB COPY" if engine == "duckdb" else "bare Spark read+write"
    print(f"[{engine}] {bare_name:<24}: {bare_wall / len(bare_runs):6.1f} s  {bare:6.1f} MB/s  "
          f"{bare_cpu / len(bare_runs):6.1f} s CPU  (ceiling)")
    print(f"[{engine}] compaction (verified, published): {ours_wall / len(our_runs):6.1f} s  {ours:6.1f} MB/s  "
          f"{ours_cpu / len(our_runs):6.1f} s CPU")
    print(f"[{engine}] ratio: {ours / bare:.2f} (target >= 0.90); CPU ratio {bare_cpu / ours_cpu:.2f}; "
          f"load average {load} on {os.cpu_count()} cores")
    print(f"[{engine}] files after: {summary['files_after']} (ideal {summary['files_ideal']}), "
          f"avg file {summary['avg_file_bytes_after'] / 1024**2:.1f} MB, bytes after {summary['bytes_after'] / 1024**2:.0f} MB",
          flush=True)


if __name__ == "__main__":
    main()
