"""Benchmark: compaction (plan, rewrite, verify, atomic publish) against a bare rewrite of the
same data on the same engine (no verification, no publishing: the ceiling), for each engine.

    python bench/compaction_bench.py [--gb 1.0] [--files 10000] [--partitions 5] [--target-mb 128] [--rounds 2]
        [--engines duckdb,spark]

On ``duckdb`` the bare side is a plain DuckDB ``COPY`` of each partition's files into files of
the target size (``FILE_SIZE_BYTES``), with the memory limit and insertion-order setting the
embedded engine uses; on ``spark`` it is a bare Spark read-and-write (``bare_rewrite_app.py``:
the same Spark connection, ``local[2]``, settings and partitions at once as the rewrite app).

Data: ``--files`` small Parquet files (about ``--gb`` in total) over ``--partitions``
partitions, generated with pyarrow once and reused (``--data-dir``). Each side runs in a
process of its own (``bench/measured.py``), after the parent read every input file once (both
sides start from a warm page cache; compaction reads hard links to the same files). A side
reports the wall and CPU seconds of its work (its own and its children's, e.g. the JVM;
imports and the lake copy excluded) and the process's peak RSS. Rounds alternate which side
runs first, so a load change on a shared machine hits both; ratios are total against total,
by wall time and by CPU seconds (which depend far less on what else the machine runs).
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
from bench.measured import load_average, run_measured  # noqa: E402 - needs the path above

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


class Stopwatch:
    """Wall and CPU seconds (this process and its finished children) since it was started."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def read(self) -> dict[str, float]:
        return {"wall": time.perf_counter() - self.wall, "cpu": cpu_seconds() - self.cpu}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def partition_jobs(source: Path, work: Path, target_bytes: int) -> list[dict]:
    """Return the bare Spark app's jobs: every partition as ``ceil(bytes / target)`` files, as the planner sizes them."""
    jobs = []
    for partition in sorted((source / TABLE).iterdir()):
        _, size = tree_bytes(partition)
        jobs.append({"input": str(partition), "output": str(work / "bare" / partition.name),
                     "target": max(1, math.ceil(size / target_bytes))})
    return jobs


def run_bare_spark(source: str, work: str, target_bytes: int) -> dict:
    """One side (in its own process): the bare Spark read-and-write of every partition."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from dagfoundry.spark_submit import DEFAULT_SPARK_CONF, spark_environment

    jobs_file = Path(work) / "bare-jobs.json"
    jobs_file.write_text(json.dumps(partition_jobs(Path(source), Path(work), target_bytes)))
    os.environ.update(spark_environment())
    hook = SparkSubmitHook(conf=dict(DEFAULT_SPARK_CONF), conn_id="spark_local", name="bench-bare",
                           application_args=[str(jobs_file)], env_vars=spark_environment())
    clock = Stopwatch()
    hook.submit(str(Path(__file__).with_name("bare_rewrite_app.py")))
    return clock.read()


def run_bare_duckdb(source: str, work: str, target_bytes: int) -> dict:
    """One side (in its own process): one plain DuckDB COPY per partition into files of about the target size.

    No Hive partition column (the compacted files have none either), the embedded engine's
    memory limit and ``preserve_insertion_order = false``: only the work differs between sides.
    """
    import duckdb

    clock = Stopwatch()
    conn = duckdb.connect(config={"memory_limit": "2GB", "preserve_insertion_order": False})
    for partition in sorted((Path(source) / TABLE).iterdir()):
        out = Path(work) / "bare" / partition.name
        out.parent.mkdir(parents=True, exist_ok=True)
        conn.execute(f"COPY (SELECT * FROM read_parquet('{partition}/*.parquet', hive_partitioning = false)) "
                     f"TO '{out}' (FORMAT parquet, COMPRESSION snappy, FILE_SIZE_BYTES {target_bytes}, "
                     "PER_THREAD_OUTPUT false)")
    conn.close()
    return clock.read()


def run_compaction(source: str, work: str, target_bytes: int, engine: str) -> dict:
    """One side (in its own process): plan, rewrite on ``engine``, verify and publish every partition."""
    from dagfoundry.compaction import CompactionSettings, plan_step, publish_step, report_step
    from dagfoundry.compaction.duckdb_rewrite import rewrite_batch
    from dagfoundry.spark_submit import submit_spark_app

    lake = Path(work) / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    subprocess.run(["cp", "-al", source, str(lake)], check=True)  # hard links: no copy cost
    settings = CompactionSettings(lake_root=lake, tables=(TABLE,), target_file_bytes=target_bytes,
                                  closed_after_seconds=0, max_partitions_per_batch=64)
    clock = Stopwatch()
    plan = plan_step(settings, version="bench")
    planned = clock.read()
    if engine == "duckdb":
        for batch_file in plan["batch_files"]:
            rewrite_batch(batch_file)
    else:
        submit_spark_app("compaction_rewrite", [f for args in plan["spark_args"] for f in args])
    rewritten = clock.read()
    for batch_file in plan["batch_files"]:
        publish_step(batch_file)
    done = clock.read()
    summary = report_step(settings, version="bench")["summary"]
    phases = {"plan": planned, "rewrite": _minus(rewritten, planned), "publish": _minus(done, rewritten)}
    return {**done, "phases": phases, "summary": summary}


def _minus(later: dict, earlier: dict) -> dict:
    return {key: later[key] - earlier[key] for key in later}


def run_side(side: str, engine: str, source: Path, work: Path, target: int) -> dict:
    """Warm the input, run one side in a fresh process; return its figures (wall, cpu, peak_mib, ...)."""
    warm_cache(source)
    shutil.rmtree(work / "bare", ignore_errors=True)
    kwargs = {"source": str(source), "work": str(work), "target_bytes": target}
    if side == "ours":
        target_name, kwargs = "bench.compaction_bench:run_compaction", {**kwargs, "engine": engine}
    else:
        target_name = f"bench.compaction_bench:run_bare_{engine}"
    measured = run_measured(target_name, kwargs)
    return {**measured["result"], "peak_mib": measured["peak_mib"]}


def run_rounds(source: Path, work: Path, target: int, rounds: int, engine: str) -> tuple[list, list]:
    """Alternate bare and compaction runs; return each side's figures per round."""
    bare, ours = [], []
    for index in range(rounds):
        for side in ("bare", "ours") if index % 2 == 0 else ("ours", "bare"):
            figures = run_side(side, engine, source, work, target)
            (bare if side == "bare" else ours).append(figures)
            line = f"round {index + 1} {'bare' if side == 'bare' else 'compaction'}: {figures['wall']:.1f} s wall, " \
                   f"{figures['cpu']:.1f} s CPU, peak {figures['peak_mib']:.0f} MiB"
            if side == "ours":
                line += " (" + ", ".join(f"{name} {p['wall']:.1f} s / {p['cpu']:.1f} CPU-s"
                                         for name, p in figures["phases"].items()) + \
                        f"; verify {figures['summary']['verify_seconds']:.1f} s summed over partitions)"
            print(f"[{engine}] {line}; load average {load_average()}", flush=True)
    return bare, ours


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
            bare_runs, our_runs = run_rounds(source, work, target, args.rounds, engine)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report(engine, size, bare_runs, our_runs)


def report(engine: str, size: int, bare_runs: list[dict], our_runs: list[dict]) -> None:
    mb = size / 1024**2

    def totals(runs: list[dict]) -> tuple[float, float, float]:
        return sum(r["wall"] for r in runs), sum(r["cpu"] for r in runs), max(r["peak_mib"] for r in runs)

    (bare_wall, bare_cpu, bare_peak), (ours_wall, ours_cpu, ours_peak) = totals(bare_runs), totals(our_runs)
    ours, bare = mb * len(our_runs) / ours_wall, mb * len(bare_runs) / bare_wall
    bare_name = "bare DuckDB COPY" if engine == "duckdb" else "bare Spark read+write"
    print(f"[{engine}] {bare_name:<33}: {bare_wall / len(bare_runs):6.1f} s  {bare:6.1f} MB/s  "
          f"{bare_cpu / len(bare_runs):6.1f} s CPU  peak {bare_peak:5.0f} MiB  (ceiling)")
    print(f"[{engine}] compaction (verified, published): {ours_wall / len(our_runs):6.1f} s  {ours:6.1f} MB/s  "
          f"{ours_cpu / len(our_runs):6.1f} s CPU  peak {ours_peak:5.0f} MiB")
    phases = {name: sum(r["phases"][name]["wall"] for r in our_runs) / len(our_runs) for name in our_runs[0]["phases"]}
    print(f"[{engine}] compaction phases (mean): " + ", ".join(f"{n} {s:.1f} s" for n, s in phases.items()))
    print(f"[{engine}] ratio: {ours / bare:.2f} (target >= 0.90); CPU ratio {bare_cpu / ours_cpu:.2f}; "
          f"load average {load_average()}")
    summary = our_runs[-1]["summary"]
    print(f"[{engine}] files after: {summary['files_after']} (ideal {summary['files_ideal']}), "
          f"avg file {summary['avg_file_bytes_after'] / 1024**2:.1f} MB, bytes after {summary['bytes_after'] / 1024**2:.0f} MB",
          flush=True)


if __name__ == "__main__":
    main()
