"""The whole lifecycle end to end through a real scheduler: ``make demo``'s code on a smaller shop.

One deployment for the module (api-server, scheduler, dag-processor, triggerer, LocalExecutor,
a PostgreSQL metadata database of its own) runs the five example specs chained by their Assets
(include/demo/lifecycle.py, the copies ``make demo`` runs, sized by a small
:class:`~include.demo.run_demo.DemoSize`). The chain runs once; each test checks one stage's
output or how the stages started one another, through ``/api/v2``, the lake and the registry.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.airflow_local import free_port
from include.airflow_rest import AirflowApi
from include.demo import shop_source
from include.demo.demo_home import compare_mirrors
from include.demo.lifecycle import CDC_DAG, CHAIN, StageRun, run_chain, write_chain_specs
from include.demo.order_events import TABLE as EVENTS_TABLE
from include.demo.run_demo import DemoSize, deployment_environment, prepare_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
UNIQUE = uuid.uuid4().hex[:8]
SHOP_DATABASE = f"dagfoundry_e2e_shop_{UNIQUE}"
METADATA_DATABASE = f"dagfoundry_e2e_airflow_{UNIQUE}"
SLOT = f"df_e2e_{UNIQUE}"
#: A few weeks of a small shop: enough labels for a holdout, little enough to stay quick.
SIZE = DemoSize(
    days=36, files_per_day=5, events_per_day=60, customers=100, shop_customers=60, shop_orders=400,
    label_history_days=10, label_every_days=2, holdout_label_days=4, capture_idle="2s", capture_max_duration="2m",
)


@pytest.fixture(scope="module")
def databases() -> Iterator[None]:
    """The shop source and Airflow's metadata database, unique to this run; dropped (slots too) afterwards."""
    from contextlib import closing

    with closing(shop_source.admin_connection()) as conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone()[0] == "logical", "PostgreSQL needs wal_level=logical: run scripts/ensure_postgres_logical.sh"
        cur.execute(f'CREATE DATABASE "{METADATA_DATABASE}"')
    shop_source.recreate_database(SHOP_DATABASE)
    shop_source.seed(SIZE.shop_customers, SIZE.shop_orders, database=SHOP_DATABASE)
    try:
        yield
    finally:
        shop_source.drop_database(SHOP_DATABASE)
        with closing(shop_source.admin_connection()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{METADATA_DATABASE}" WITH (FORCE)')


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory, databases: None) -> Iterator[dict]:
    """Land the events, start the deployment, run the chain once; stop everything afterwards."""
    work = tmp_path_factory.mktemp("lifecycle")
    lake, specs, home = work / "lake", work / "dag_configs", work / "airflow"
    landed = prepare_events(lake, 1, SIZE)
    files_before = _parquet_count(lake / EVENTS_TABLE)
    write_chain_specs(ROOT / "dag_configs", specs, slot_name=SLOT, overrides=SIZE.spec_overrides())
    port = free_port()
    env = {
        **os.environ,
        **deployment_environment(home, lake, specs, METADATA_DATABASE, SHOP_DATABASE),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)  # a deployment, not a unit test
    env.pop("MLFLOW_TRACKING_URI", None)  # an earlier test's store: the chain uses the lake's default one
    launcher = [sys.executable, str(ROOT / "include" / "airflow_local.py")]
    began = time.monotonic()
    started = subprocess.run([*launcher, "start", "--environment", "inherit"], env=env, capture_output=True, text=True)
    try:
        assert started.returncode == 0, f"airflow_local.py start failed:\n{started.stdout}\n{started.stderr[-4000:]}"
        api = AirflowApi(f"http://127.0.0.1:{port}")
        stages = run_chain(api, say=lambda line: print(line, flush=True), stage_timeout=1500)
        print(f"lifecycle: deployment start and chain {time.monotonic() - began:.0f} s; "
              + ", ".join(f"{s.dag_id} {s.seconds:.0f} s" for s in stages), flush=True)
        yield {"api": api, "lake": lake, "stages": {s.dag_id: s for s in stages}, "order": stages,
               "landed": landed, "files_before": files_before}
    finally:
        stopped = subprocess.run([*launcher, "stop", "--environment", "inherit"], env=env, capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stderr[-2000:]


def _parquet_count(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.parquet"))


def test_cdc_mirrors_equal_the_shop_source(lifecycle: dict) -> None:
    mirrors = compare_mirrors(lifecycle["lake"], SHOP_DATABASE)
    assert mirrors["public.customers"][0] == SIZE.shop_customers
    assert mirrors["public.orders"][0] == SIZE.shop_orders
    assert all(equal for *_, equal in mirrors.values()), mirrors
    assert shop_source.replication_slots(SHOP_DATABASE) == [SLOT]


def test_compaction_reduced_the_files_of_every_day(lifecycle: dict) -> None:
    report = lifecycle["stages"]["orders_events_compaction"].outputs["report"]["summary"]
    lake = lifecycle["lake"]
    assert lifecycle["files_before"] == SIZE.days * SIZE.files_per_day
    assert report["files_before"] == lifecycle["files_before"] and report["partitions_published"] == SIZE.days
    assert _parquet_count(lake / EVENTS_TABLE) == report["files_after"] < report["files_before"]
    for day in (lake / EVENTS_TABLE).glob("event_date=*"):
        assert _parquet_count(day) < SIZE.files_per_day, f"{day.name} was not compacted"


def test_features_were_published_for_every_simulated_day(lifecycle: dict) -> None:
    landed = lifecycle["landed"]
    offline = lifecycle["lake"] / "features" / "customer_order_features"
    written = {p.name.removeprefix("feature_date=") for p in offline.glob("feature_date=*")}
    days = {(landed["first"] + dt.timedelta(days=n)).isoformat() for n in range(SIZE.days)}
    assert days <= written, sorted(days - written)
    published = lifecycle["stages"]["customer_order_features"].outputs["materialize_online"]["published"]
    assert days <= set(published)


def test_retraining_registered_a_version_with_the_challenger_alias(lifecycle: dict) -> None:
    import mlflow

    from dagfoundry.models.tracking import configure, local_default
    from dagfoundry.promotion.switch import alias_version

    registered = lifecycle["stages"]["shop_churn_retraining"].outputs["register_model"]
    configure(local_default(lifecycle["lake"]))
    client = mlflow.MlflowClient()
    versions = [v.version for v in client.search_model_versions("name = 'shop_churn'")]
    assert str(registered["version"]) in {str(v) for v in versions}
    assert str(alias_version(client, "shop_churn", "challenger")) == str(registered["version"])


def test_promotion_decided_and_the_champion_alias_follows_the_decision(lifecycle: dict) -> None:
    import mlflow

    from dagfoundry.models.tracking import configure, local_default
    from dagfoundry.promotion.switch import alias_version

    outputs = lifecycle["stages"]["shop_churn_promotion"].outputs
    registered = lifecycle["stages"]["shop_churn_retraining"].outputs["register_model"]
    decision = outputs["evaluate"]
    configure(local_default(lifecycle["lake"]))
    champion = alias_version(mlflow.MlflowClient(), "shop_churn", "champion")
    # The first round has no champion: a challenger that clears the floors is promoted.
    assert decision["passed"] and outputs["record_outcome"] == "promoted", decision
    assert str(champion) == str(registered["version"])


def test_each_dag_after_the_first_was_started_by_its_upstream_asset(lifecycle: dict) -> None:
    order: list[StageRun] = lifecycle["order"]
    assert [s.dag_id for s in order] == [CDC_DAG, *(dag for dag, _ in CHAIN)]
    assert order[0].run_type == "manual" and order[0].trigger_kind == "rest_api"
    for upstream, stage, (_, asset) in zip(order[:-1], order[1:], CHAIN, strict=True):
        assert stage.run_type == "asset_triggered" and stage.trigger_kind == "asset", stage
        started_it = [
            event for event in stage.asset_events
            if any(r["run_id"] == stage.run_id and r["triggering"] for r in event["created_dagruns"])
        ]
        assert [e["name"] for e in started_it] == [asset], stage.asset_events
        assert started_it[0]["source_dag_id"] == upstream.dag_id, started_it
        assert started_it[0]["source_run_id"] == upstream.run_id, started_it
