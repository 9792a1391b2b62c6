"""``make demo``: the whole lifecycle through a real Airflow scheduler, chained by Assets.

1. The shop database ``dagfoundry_demo`` in the local PostgreSQL (seeded on the first run,
   changed by inserts, updates, key changes and deletes on every later run) and the shop's
   order event stream in the lake: :data:`DEMO_SIZE` simulated days, several small files per
   day (a later run adds another batch of late events to every day). Churn labels are derived
   from the events.
2. A real Airflow (api-server, scheduler, dag-processor, triggerer, LocalExecutor) on a
   PostgreSQL metadata database ``dagfoundry_demo_airflow`` (recreated each run) and an MLflow UI.
3. ``shop_cdc`` is triggered; every later DAG is started by the Asset event of the one before
   (include/demo/lifecycle.py): compaction -> features (the dates the compacted days affect)
   -> retraining -> promotion (approval ``auto``). Task states print while a stage runs, its
   duration when it ends.
4. A summary; Airflow and MLflow keep running (``make airflow-stop`` ends them).

At the end the demo drops its replication slot through ``shop_cdc``'s ``drop_slot`` action (a
slot holds back the server's WAL); ``DEMO_KEEP_SLOT=1`` keeps it. Run it again and it continues
from the state it left (the round number in ``.demo/round``): the source changes again, the CDC
run snapshots the shop again (or, with the slot kept, streams only those changes),
late files make the days small-file heavy again, features and the model are recomputed, and
the promotion compares the new challenger with the champion of the earlier round on the same
holdout, promoting only when no gate fails (include/demo/lifecycle.py, docs/promotion.md).
The end-to-end test (tests/integration/runtime/test_lifecycle.py) runs the same code on a
smaller :class:`DemoSize`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from include.demo import shop_source  # noqa: E402
from include.demo.demo_home import DEMO, compare_mirrors, demo_environment, shop_connection  # noqa: E402

#: A label says whether the customer orders in the next 14 days: the latest label day is 14 days ago.
LABEL_HORIZON_DAYS = 14


@dataclass(frozen=True)
class DemoSize:
    """How much data a lifecycle run makes, and the spec settings that size implies.

    :param days: simulated days of order events, ending yesterday
    :param label_history_days: the first label day comes this many days after the first event day
    :param label_every_days: one label per active customer every this many days
    :param holdout_label_days: the retraining holds out the labels of the latest this many days that have labels
    :param capture_idle: the CDC spec's ``capture.idle`` (caught up after this long without changes)
    :param capture_max_duration: the CDC spec's ``capture.max_duration``
    """

    days: int = 60
    files_per_day: int = 5
    events_per_day: int = 300
    customers: int = 300
    shop_customers: int = 500
    shop_orders: int = 5000
    label_history_days: int = 30
    label_every_days: int = 2
    holdout_label_days: int = 6
    capture_idle: str = "2s"
    capture_max_duration: str = "3m"

    def spec_overrides(self) -> dict[str, dict]:
        """Return the keys the chain's copies of the example specs change (lifecycle.write_chain_specs)."""
        return {
            "cdc/shop.yaml": {"capture": {"idle": self.capture_idle, "max_duration": self.capture_max_duration}},
            # One rewrite task for every day (two would compete for the cores).
            "compaction/orders_events.yaml": {"spark": {"max_partitions_per_batch": max(self.days, 1)}},
            # The holdout counts back from the run's day, and the latest label is LABEL_HORIZON_DAYS old.
            "models/shop_churn.yaml": {"split": {"holdout_days": LABEL_HORIZON_DAYS + self.holdout_label_days}},
        }


#: What ``make demo`` runs: sized to finish in minutes on an idle 2-core machine.
DEMO_SIZE = DemoSize()
ROUND_FILE = DEMO / "round"
#: The example specs as the chain runs them (include/demo/lifecycle.py: schedules on Assets only).
CHAIN_SPECS = DEMO / "dag_configs"
METADATA_DATABASE = "dagfoundry_demo_airflow"
MLFLOW_PORT = 5000


def step(message: str) -> None:
    print(f"\n== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_events(lake: Path, round_number: int, size: DemoSize = DEMO_SIZE) -> dict:
    """Land ``size.days`` simulated days of order events ending yesterday (a later round adds late files) and the labels."""
    from include.demo.churn_labels import write_churn_labels
    from include.demo.order_events import TABLE, write_order_events

    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=size.days)
    staging = lake.parent / f"_incoming_{round_number}"
    shutil.rmtree(staging, ignore_errors=True)
    events = write_order_events(staging, first, size.days, events_per_day=size.events_per_day,
                                files_per_day=size.files_per_day, customers=size.customers,
                                seed=3 + round_number, churn_signal=True)
    for source in sorted((staging / TABLE).rglob("*.parquet")):
        target = lake / TABLE / source.parent.name / f"r{round_number}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
    # The demo's clock: the writer finished hours ago and the previous round's compaction before
    # that, so every day is closed (compaction leaves days changed within `closed_after` alone).
    aged = time.time() - 6 * 3600
    for path in [*(lake / TABLE).rglob("*"), lake / TABLE]:
        os.utime(path, (aged, aged))
    shutil.rmtree(staging)
    # A label needs history before it (the features' windows) and its horizon of future after it.
    labels = write_churn_labels(lake, first + dt.timedelta(days=size.label_history_days),
                                today - dt.timedelta(days=LABEL_HORIZON_DAYS), every_days=size.label_every_days,
                                horizon_days=LABEL_HORIZON_DAYS)
    files = sum(1 for _ in (lake / TABLE).rglob("*.parquet"))
    return {"events": events, "first": first, "last": today - dt.timedelta(days=1), "files": files, "labels": labels}


def deployment_environment(home: Path, lake: Path, specs: Path, metadata_database: str, shop_database: str,
                           *, mlflow_port: int | None = None) -> dict[str, str]:
    """Return the settings of a real deployment running the chain (the demo's, or a test's with its own names).

    :param metadata_database: Airflow's metadata database on the local PostgreSQL
    :param shop_database: the shop source the CDC spec's ``shop_postgres`` connection points to
    :param mlflow_port: run an MLflow UI on the lake's registry on this port
    """
    settings = {
        **demo_environment(),
        "AIRFLOW_HOME": str(home),
        "DAGFOUNDRY_LAKE_ROOT": str(lake),
        "DAGFOUNDRY_CONFIG_DIR": str(specs),
        "AIRFLOW_CONN_SHOP_POSTGRES": shop_connection(shop_database),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{metadata_database}",
        # Local demo: everyone is admin (the REST calls and the UI need no login).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW_PARALLELISM": "4",
    }
    if mlflow_port:
        settings.update({
            "DAGFOUNDRY_MLFLOW_UI_PORT": str(mlflow_port),
            "DAGFOUNDRY_MLFLOW_BACKEND": f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}",
            # The UI only reads: no job runner (it forks a handful of worker processes).
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        })
    return settings


def scheduler_environment() -> dict[str, str]:
    """Return the demo's settings for a real deployment (``make airflow`` serves the same)."""
    from include.airflow_local import _port_free

    return deployment_environment(
        DEMO / "airflow", DEMO / "lake", CHAIN_SPECS, METADATA_DATABASE, shop_source.DEMO_DATABASE,
        mlflow_port=MLFLOW_PORT if _port_free(MLFLOW_PORT) else 5001,
    )


def recreate_metadata_database(name: str) -> None:
    from contextlib import closing

    with closing(shop_source.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    from include.airflow_local import LocalAirflow, airflow_environment
    from include.airflow_rest import AirflowApi
    from include.demo.lifecycle import run_chain, write_chain_specs

    began = time.monotonic()
    # Stop the previous round's Airflow first: its ports are the ones this round takes again.
    previous_airflow = LocalAirflow(airflow_environment({**os.environ, **demo_environment()}, port=0))
    if any(previous_airflow.run_dir.glob("*.pid")):  # Airflow or the MLflow UI (stop ends both)
        step("stopping the demo's Airflow of the previous run")
        previous_airflow.stop()
    # Port 8080 (AIRFLOW_PORT chooses another; a free one when 8080 is taken), MLflow 5000 (or 5001).
    environment = airflow_environment({**os.environ, **scheduler_environment()})
    environment.pop("MLFLOW_TRACKING_URI", None)  # the demo's registry is the lake's
    local = LocalAirflow(environment)
    previous = int(ROUND_FILE.read_text()) if ROUND_FILE.exists() and shop_source.database_exists() else 0
    round_number = previous + 1
    lake = DEMO / "lake"
    size = DEMO_SIZE
    if round_number == 1:
        shutil.rmtree(DEMO, ignore_errors=True)
        step(f"round 1: seeding the shop database {shop_source.DEMO_DATABASE} "
             f"({size.shop_customers} customers, {size.shop_orders} orders)")
        shop_source.recreate_database()
        shop_source.seed(size.shop_customers, size.shop_orders)
    else:
        step(f"round {round_number}: changing the shop database again (the model is promoted only if better)")
        touched = shop_source.change(round_number)
        print(f"   {touched}")
    step(f"the order event stream: {size.days} simulated days, {size.files_per_day} small files a day; churn labels")
    landed = prepare_events(lake, round_number, size)
    print(f"   {landed['events']} events {landed['first']} .. {landed['last']}; {landed['files']} files; "
          f"{landed['labels']} labels")
    write_chain_specs(ROOT / "dag_configs", CHAIN_SPECS, overrides=size.spec_overrides())
    step(f"starting Airflow (metadata database {METADATA_DATABASE}, recreated) and the MLflow UI")
    recreate_metadata_database(METADATA_DATABASE)
    (DEMO / "airflow").mkdir(parents=True, exist_ok=True)
    local.start()
    ready = time.monotonic() - began
    print(f"   Airflow {local.url}, MLflow {local.mlflow_url} ({ready:.0f} s from start)")
    step("the chain: shop_cdc -> compaction -> features -> retraining -> promotion, each started by an Asset")
    api = AirflowApi(local.url)
    stages = run_chain(api)
    mirrors = compare_mirrors(lake, shop_source.DEMO_DATABASE)
    if os.environ.get("DEMO_KEEP_SLOT") != "1":
        drop_slot(api)
    ROUND_FILE.write_text(str(round_number))
    (local.run_dir / "demo_finished").write_text(str(round_number))
    print(summary(stages, mirrors, landed, local, round_number, time.monotonic() - began, ready))
    return 0 if all(equal for *_, equal in mirrors.values()) else 1


def drop_slot(api) -> None:
    """Decommission the demo's replication slot with the CDC DAG's own ``drop_slot`` action.

    A logical slot holds back the WAL of the whole PostgreSQL server, growing with every write
    of any database there, until a capture reads it again: a demo leaves none behind
    (``DEMO_KEEP_SLOT=1`` keeps it, and the next round streams only the changes from it).
    """
    from include.demo.lifecycle import CDC_DAG

    step("dropping the demo's replication slot (shop_cdc, action drop_slot); DEMO_KEEP_SLOT=1 keeps it")
    run_id = api.trigger(CDC_DAG, {"action": "drop_slot"})
    state = api.wait_for_runs(CDC_DAG, [run_id], timeout=600)[run_id]
    if state != "success":
        raise SystemExit(f"shop_cdc drop_slot run {run_id} ended {state}:\n{api.failure_report(CDC_DAG, run_id)}")


def engines_of(specs: Path) -> str:
    """Say which engine runs each lake job of the chain's specs (their ``engine:``, defaults applied).

    The factories build each job's task from that key (``duckdb_mirror`` or ``spark_mirror``,
    ``compute_features.duckdb`` or ``.spark``...), and the tasks log the engine they ran on.
    """
    from dagfoundry.dag_files import load_config_dir

    said = [
        f"{loaded.spec.name} {loaded.spec.engine}"
        for loaded in sorted(load_config_dir(specs).specs, key=lambda s: s.spec.name)
        if getattr(loaded.spec, "engine", None)
    ]
    return ", ".join(said)


def summary(stages, mirrors, landed, local, round_number: int, seconds: float, ready: float) -> str:
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
        f"   timing      set-up and Airflow start {ready:.0f} s; "
        + ", ".join(f"{s.dag_id} {s.seconds:.0f} s" for s in stages),
        f"   engines     {engines_of(CHAIN_SPECS)}",
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
        + (" (DEMO_KEEP_SLOT=1: the next `make demo` streams the source's changes from it; trigger "
           "shop_cdc with action drop_slot to drop it)" if slots
           else " (dropped by shop_cdc's drop_slot action: no WAL held back; the next round snapshots the shop again)"),
        "",
        f"   Airflow UI  {local.url}  (every run of the chain; admin without login)",
        f"   MLflow UI   {local.mlflow_url}  (experiment dagfoundry/shop_churn, registered model shop_churn)",
        "   stop both:  make airflow-stop      serve again: make airflow      run again: make demo",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
