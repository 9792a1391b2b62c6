"""``make demo``: the whole lifecycle through a real Airflow scheduler, chained by Assets.

1. The shop database ``dagfoundry_demo`` in the local PostgreSQL (seeded on the first run,
   changed by inserts, updates, key changes and deletes on every later run) and the shop's
   order event stream in the lake: 120 simulated days, many small files per day (a later run
   adds another batch of late events to every day). Churn labels are derived from the events.
2. A real Airflow (api-server, scheduler, dag-processor, triggerer, LocalExecutor) on a
   PostgreSQL metadata database ``dagfoundry_demo_airflow`` (recreated each run) and an MLflow UI.
3. ``shop_cdc`` is triggered; every later DAG is started by the Asset event of the one before
   (include/demo/lifecycle.py): compaction -> features (the dates the compacted days affect)
   -> retraining -> promotion (approval ``auto``).
4. A summary; Airflow and MLflow keep running (``make airflow-stop`` ends them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from include.demo import shop_source  # noqa: E402
from include.demo.run_demo import DEMO, MIRRORED, _normalized, demo_environment  # noqa: E402

EVENT_DAYS = 120
ROUND_FILE = DEMO / "round"
#: The example specs as the chain runs them (include/demo/lifecycle.py: schedules on Assets only).
CHAIN_SPECS = DEMO / "dag_configs"


def step(message: str) -> None:
    print(f"\n== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_events(lake: Path, round_number: int, *, days: int = EVENT_DAYS, events_per_day: int = 300,
                   files_per_day: int = 6, customers: int = 300) -> dict:
    """Land ``days`` simulated days of order events ending yesterday (a later round adds late files) and the labels."""
    import datetime as dt

    from include.demo.churn_labels import write_churn_labels
    from include.demo.order_events import TABLE, write_order_events

    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days)
    staging = lake.parent / f"_incoming_{round_number}"
    shutil.rmtree(staging, ignore_errors=True)
    events = write_order_events(staging, first, days, events_per_day=events_per_day, files_per_day=files_per_day,
                                customers=customers, seed=3 + round_number, churn_signal=True)
    aged = time.time() - 6 * 3600  # the writer finished hours ago: the days are closed
    for source in sorted((staging / TABLE).rglob("*.parquet")):
        target = lake / TABLE / source.parent.name / f"r{round_number}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        os.utime(target, (aged, aged))
    for folder in [*(lake / TABLE).iterdir(), lake / TABLE]:
        os.utime(folder, (aged, aged))
    shutil.rmtree(staging)
    # Labels need 30 days of history before and 14 days of future after the label day.
    labels = write_churn_labels(lake, first + dt.timedelta(days=30), today - dt.timedelta(days=14))
    files = sum(1 for _ in (lake / TABLE).rglob("*.parquet"))
    return {"events": events, "first": first, "last": today - dt.timedelta(days=1), "files": files, "labels": labels}


METADATA_DATABASE = "dagfoundry_demo_airflow"
AIRFLOW_PORT = 8080
MLFLOW_PORT = 5000


def scheduler_environment() -> dict[str, str]:
    """Return the demo's settings for a real deployment (``make airflow`` serves the same)."""
    from include.airflow_local import _port_free

    lake = DEMO / "lake"
    mlflow_port = MLFLOW_PORT if _port_free(MLFLOW_PORT) else 5001
    return {
        **demo_environment(),
        "DAGFOUNDRY_CONFIG_DIR": str(CHAIN_SPECS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{METADATA_DATABASE}",
        # Local demo: everyone is admin (the REST calls and the UI need no login).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW_PARALLELISM": "4",
        "DAGFOUNDRY_MLFLOW_UI_PORT": str(mlflow_port),
        "DAGFOUNDRY_MLFLOW_BACKEND": f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}",
        # The UI only reads: no job runner (it forks a handful of worker processes).
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def recreate_metadata_database(name: str) -> None:
    from contextlib import closing

    with closing(shop_source.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')


def compare_mirrors(lake: Path, database: str) -> dict[str, tuple[int, int, bool]]:
    """Return table -> (source rows, mirror rows, equal)."""
    import pyarrow.parquet as pq

    found = {}
    for table_id, columns in MIRRORED.items():
        mirror = pq.read_table(lake / "mirror" / "shop" / table_id, columns=columns)
        mirrored = sorted(
            tuple(None if v is None else str(v) for v in row)
            for row in zip(*(mirror.column(c).to_pylist() for c in columns), strict=True)
        )
        source = shop_source.table_rows(table_id.split(".")[1], columns, database=database)
        found[table_id] = (len(source), len(mirrored), _normalized(mirrored) == _normalized(source))
    return found


def main() -> int:
    from include.airflow_local import LocalAirflow, airflow_environment
    from include.airflow_rest import AirflowApi
    from include.demo.lifecycle import run_chain, write_chain_specs

    began = time.monotonic()
    environment = airflow_environment({**os.environ, **scheduler_environment(), "AIRFLOW_PORT": str(AIRFLOW_PORT)})
    local = LocalAirflow(environment)
    if local.running():
        step("stopping the demo's Airflow of the previous run")
        local.stop()
    previous = int(ROUND_FILE.read_text()) if ROUND_FILE.exists() and shop_source.database_exists() else 0
    round_number = previous + 1
    lake = DEMO / "lake"
    if round_number == 1:
        shutil.rmtree(DEMO, ignore_errors=True)
        step(f"round 1: seeding the shop database {shop_source.DEMO_DATABASE} (500 customers, 5000 orders)")
        shop_source.recreate_database()
        shop_source.seed()
    else:
        step(f"round {round_number}: changing the shop database again")
        touched = shop_source.change(round_number)
        print(f"   {touched}")
    step(f"the order event stream: {EVENT_DAYS} simulated days, 6 small files a day; churn labels")
    landed = prepare_events(lake, round_number)
    print(f"   {landed['events']} events {landed['first']} .. {landed['last']}; {landed['files']} files; "
          f"{landed['labels']} labels")
    write_chain_specs(ROOT / "dag_configs", CHAIN_SPECS)
    step(f"starting Airflow (metadata database {METADATA_DATABASE}, recreated) and the MLflow UI")
    recreate_metadata_database(METADATA_DATABASE)
    (DEMO / "airflow").mkdir(parents=True, exist_ok=True)
    local.start()
    print(f"   Airflow {local.url}, MLflow {local.mlflow_url} ({time.monotonic() - began:.0f} s)")
    step("the chain: shop_cdc -> compaction -> features -> retraining -> promotion, each started by an Asset")
    stages = run_chain(AirflowApi(local.url))
    mirrors = compare_mirrors(lake, shop_source.DEMO_DATABASE)
    ROUND_FILE.write_text(str(round_number))
    (local.run_dir / "demo_finished").write_text(str(round_number))
    print(summary(stages, mirrors, landed, local, round_number, time.monotonic() - began))
    return 0 if all(equal for *_, equal in mirrors.values()) else 1


def summary(stages, mirrors, landed, local, round_number: int, seconds: float) -> str:
    by_dag = {s.dag_id: s for s in stages}
    cdc = by_dag["shop_cdc"].outputs
    compaction = (by_dag["orders_events_compaction"].outputs.get("report") or {}).get("summary", {})
    features = by_dag["customer_order_features"].outputs.get("materialize_online") or {}
    registered = by_dag["shop_churn_retraining"].outputs.get("register_model") or {}
    decision = by_dag["shop_churn_promotion"].outputs.get("evaluate") or {}
    outcome = by_dag["shop_churn_promotion"].outputs.get("record_outcome")
    metrics = decision.get("evaluation", {})
    challenger = metrics.get("challenger", {}).get("metrics", {})
    champion = (metrics.get("champion") or {}).get("metrics") or {}
    published = features.get("published", [])
    slots = shop_source.replication_slots()
    lines = [
        "",
        f"== summary of round {round_number} ({seconds:.0f} s from start to here)",
        f"   CDC         captured {json.dumps(cdc.get('capture'), default=str)[:200]}",
    ]
    for table, (source_rows, mirror_rows, equal) in mirrors.items():
        lines.append(f"               {table}: PostgreSQL {source_rows} rows, lake mirror {mirror_rows} -> "
                     f"{'equal' if equal else 'DIFFERENT'}")
    lines += [
        f"   compaction  files {compaction.get('files_before')} -> {compaction.get('files_after')} in "
        f"{compaction.get('partitions_published')} day partitions ({landed['files']} files before the run in total)",
        f"   features    {len(published)} feature days"
        + (f" {published[0]} .. {published[-1]}" if published else "")
        + f"; online store holds {(features.get('online') or {}).get('feature_date')}",
        f"   retraining  shop_churn v{registered.get('version')} registered as challenger",
        "   holdout     " + "  ".join(
            f"{name} {value:.3f}" + (f" (champion {champion[name]:.3f})" if name in champion else "")
            for name, value in sorted(challenger.items()) if isinstance(value, int | float)
        ) + ("" if champion else "  (no previous champion)"),
        f"   promotion   {outcome}: {decision.get('reason')}",
        f"               chart {decision.get('chart_path')}",
        "   each run started by the Asset of the one before: "
        + ", ".join(f"{s.dag_id} <- {'/'.join(s.triggered_by) or s.run_type}" for s in stages),
        f"   replication slots kept: {', '.join(slots) or 'none'}"
        + (" (shop_cdc runs every 15 minutes in the running Airflow and resumes from it; trigger it with "
           "action drop_slot to drop it)" if slots else ""),
        "",
        f"   Airflow UI  {local.url}  (every run of the chain; admin without login)",
        f"   MLflow UI   {local.mlflow_url}  (experiment dagfoundry/shop_churn, registered model shop_churn)",
        "   stop both:  make airflow-stop      serve again: make airflow      run again: make demo",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
