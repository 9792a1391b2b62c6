"""``make demo-inprocess``: three kinds end to end on embedded defaults, through ``dag.test()``.

No scheduler: each DAG runs in this process (``make demo`` runs the whole lifecycle through a
real one, ``include/demo/run_demo.py``).

1. A shop database in the local PostgreSQL (``dagfoundry_demo``), seeded with customers and orders.
2. ``shop_cdc`` (dag_configs/cdc/shop.yaml) runs through Airflow (``dag.test()``): Debezium
   snapshots the tables into the landing zone and Spark builds the lake mirrors.
3. The source changes (inserts, updates, key changes, deletes); ``shop_cdc`` runs again and
   streams just the changes; the mirrors are compared with PostgreSQL row for row.
4. A streaming writer's order events (many small files per day) land in the lake;
   ``orders_events_compaction`` compacts the closed days, verified and published atomically.
5. ``customer_order_features`` backfills 30 days of point-in-time-correct features in
   chunks, materializes the latest day online, and the demo serves a lookup from it.
6. ``shop_cdc`` runs once more with the ``drop_slot`` action: the replication slot and the
   publication are dropped, so the demo leaves nothing holding WAL on the server.

Everything lives under ``.demo/`` (Airflow home, lake); a re-run starts from scratch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from include.demo import shop_source  # noqa: E402
from include.demo.demo_home import DEMO, demo_environment  # noqa: E402
from include.demo.demo_home import compare_mirrors as mirror_verdicts  # noqa: E402
from include.demo.order_events import TABLE as EVENTS_TABLE  # noqa: E402
from include.demo.order_events import write_order_events  # noqa: E402

COMPACTION_DAG = "orders_events_compaction"
FEATURE_DAG = "customer_order_features"


def configure_environment() -> None:
    if any((DEMO / "airflow" / "local").glob("*.pid")):
        raise SystemExit("`make airflow` serves .demo/ and the demo starts from scratch: run `make airflow-stop` first")
    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "airflow").mkdir(parents=True)
    os.environ.update(demo_environment())
    # Task logs stay in .demo/airflow/logs; the console shows what the demo says and any warning.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("DEMO_LOG_LEVEL", "WARNING")
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def run_dag(dag_id: str, **conf):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DagRunState

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"spec errors:\n{bag.import_errors}")
    started = time.perf_counter()
    run = bag.dags[dag_id].test(run_conf=conf or None)
    seconds = time.perf_counter() - started
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    print(f"   {dag_id}: {run.state} in {seconds:.0f} s; tasks: {states}")
    if run.state != DagRunState.SUCCESS:
        raise SystemExit(f"{dag_id} failed; see the task logs above")
    return run


def compare_mirrors() -> None:
    for table_id, (source_rows, mirror_rows, equal) in mirror_verdicts(DEMO / "lake").items():
        verdict = "equal" if equal else "DIFFERENT"
        print(f"   {table_id}: PostgreSQL {source_rows} rows, lake mirror {mirror_rows} rows -> {verdict}")
        if not equal:
            raise SystemExit(f"mirror of {table_id} differs from the source")


def main() -> None:
    configure_environment()
    step("seeding the shop database dagfoundry_demo in the local PostgreSQL")
    shop_source.recreate_database()
    shop_source.seed()
    step("migrating Airflow's metadata database (.demo/airflow, SQLite)")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    step("shop_cdc, first run: Debezium snapshot -> landing batches -> lake mirror")
    run_dag("shop_cdc")
    compare_mirrors()
    step("changing the source: 300 inserts, status updates, key changes, deletes")
    shop_source.change(1)
    step("shop_cdc, second run: streaming just the changes")
    run_dag("shop_cdc")
    compare_mirrors()
    events_compaction_and_features()
    step("shop_cdc, action drop_slot: drop the replication slot and publication (an idle slot holds WAL)")
    run_dag("shop_cdc", action="drop_slot")
    left = shop_source.replication_slots()
    print(f"   replication slots left on {shop_source.DEMO_DATABASE}: {left or 'none'}")
    if left:
        raise SystemExit(f"the demo left replication slots behind: {left}")
    step(f"done; the lake is in {DEMO / 'lake'}: landing/ (change history), mirror/, events/, features/, online/")


def events_compaction_and_features() -> None:
    import datetime as dt

    lake = DEMO / "lake"
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=45)
    step("a streaming writer lands 45 days of order events: 20 small files per day")
    events = write_order_events(lake, first, 45, events_per_day=400, files_per_day=20)
    _age_files(lake / EVENTS_TABLE, hours=6)  # the writer finished hours ago: the days are closed
    print(f"   {events} events in {_count_files(lake / EVENTS_TABLE)} files under {EVENTS_TABLE}/")
    step(f"{COMPACTION_DAG}: plan, Spark rewrite, verify (DuckDB reads both sides: types, rows, checksum), atomic publish")
    run = run_dag(COMPACTION_DAG)
    report = run.get_task_instance("report").xcom_pull(task_ids="report") or {}
    summary = report.get("summary", {})
    print(f"   files {summary.get('files_before')} -> {summary.get('files_after')} "
          f"(ideal {summary.get('files_ideal')}); now {_count_files(lake / EVENTS_TABLE)} files")
    start, end = today - dt.timedelta(days=30), today - dt.timedelta(days=1)
    step(f"{FEATURE_DAG}: chunked backfill {start} .. {end}, then the latest day goes online")
    run_dag(FEATURE_DAG, start=start.isoformat(), end=end.isoformat(), chunk_days=15)
    partitions = sorted(p.name for p in (lake / "features" / FEATURE_DAG).glob("feature_date=*"))
    print(f"   {len(partitions)} offline partitions: {partitions[0]} .. {partitions[-1]}")
    serve_lookup(lake)


def serve_lookup(lake: Path) -> None:
    from dagfoundry.features.online_store import SqliteOnlineStore, get_online_features

    step("online lookup for model serving: get_online_features(view, keys)")
    store = SqliteOnlineStore(str(lake / "online" / "features.sqlite"))
    for row in get_online_features(FEATURE_DAG, [{"customer_id": c} for c in (1, 2, 3)], store=store):
        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in (row or {}).items()}
        print(f"   {shown}")


def _age_files(folder: Path, hours: int) -> None:
    then = time.time() - hours * 3600
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))


def _count_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.parquet"))


if __name__ == "__main__":
    main()
