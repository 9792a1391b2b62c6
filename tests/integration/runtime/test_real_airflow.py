"""dagfoundry on a real Airflow, the way it is deployed: no ``dag.test()``.

``include/airflow_local.py`` (what ``make airflow`` runs) starts the api-server, scheduler,
dag-processor and triggerer with a PostgreSQL metadata database in a database of its own;
the tests drive it only through the REST API (``/api/v2``), as a user or a CI job would:
trigger with conf, backfill, break a spec, look at the UI. The deployment runs the
CeleryExecutor with one ``airflow celery worker`` on the local Redis (a database number and a
queue of its own), the way a team's cluster runs tasks; ``make airflow``'s LocalExecutor is
the same launcher with one setting less.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.airflow_local import free_port
from include.airflow_rest import AirflowApi
from include.demo.order_events import TABLE as EVENTS_TABLE
from include.demo.order_events import write_order_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
FIRST_DAY = dt.date(2025, 3, 1)
DAYS = 5
COMPACTION_DAG = "rt_compaction"
FEATURE_DAG = "rt_features"
CDC_DAG = "rt_cdc"
#: The local Redis database the Celery broker uses here (others use 0 and the online store tests theirs).
CELERY_REDIS_DB = 9
UNIQUE = uuid.uuid4().hex[:8]
CELERY_QUEUE = f"dagfoundry_rt_{UNIQUE}"
PROMOTION_DAG = "rt_promotion"
PROMOTION_SPEC = f"""
kind: model_promotion
name: {PROMOTION_DAG}
description: Asks a person before promoting (real-scheduler test).
retries: 0
registered_model: rt_model
metrics: {{roc_auc: {{floor: 0.55}}}}
approval: {{mode: required, timeout: 1h}}
"""

COMPACTION_SPEC = f"""
kind: lake_compaction
name: {COMPACTION_DAG}
description: Compacts the order events (real-scheduler test).
schedule: null
start_date: 2025-01-01
retries: 0
tables: [{EVENTS_TABLE}]
target_file_size: 1MB
min_small_files: 5
closed_after: 2h
spark: {{conn_id: spark_local, driver_memory: 512m}}
"""

FEATURE_SPEC = f"""
kind: feature_backfill
name: {FEATURE_DAG}
description: Orders per customer and day (real-scheduler test).
schedule: "0 2 * * *"
start_date: {FIRST_DAY.isoformat()}
retries: 0
max_active_runs: 2
entity_keys: [customer_id]
sources:
  - {{name: orders, table: {EVENTS_TABLE}, event_time: ordered_at, partition_column: event_date, on_missing: skip}}
features:
  - {{name: orders_1d, function: count, window_days: 1}}
ttl_days: 7
"""


CDC_SPEC = f"""
kind: cdc_ingestion
name: {CDC_DAG}
description: Customers of a test shop, captured with the embedded Debezium engine (real-scheduler test).
schedule: null
start_date: 2025-01-01
retries: 0
source: {{name: rtshop, conn_id: rt_shop}}
tables:
  - name: public.customers
    primary_key: [customer_id]
capture: {{idle: 3s, max_duration: 3m, slot_name: df_rt_{UNIQUE}, publication_name: df_rt_{UNIQUE}}}
"""


@pytest.fixture(scope="module")
def metadata_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for Airflow's metadata, dropped afterwards."""
    import psycopg2

    name = f"dagfoundry_airflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def source_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database with a customers table; its slots and itself dropped afterwards."""
    import psycopg2

    name = f"dagfoundry_rt_source_{UNIQUE}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone()[0] == "logical", "PostgreSQL needs wal_level=logical: run scripts/ensure_postgres_logical.sh"
        cur.execute(f'CREATE DATABASE "{name}"')
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name) as source, source.cursor() as cur:
        cur.execute(
            "CREATE TABLE customers (customer_id int PRIMARY KEY, name text, city text);"
            "INSERT INTO customers SELECT g, 'customer ' || g, 'city ' || (g % 7) FROM generate_series(1, 120) g;"
        )
    source.close()
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active", (name,))
            cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,))
            for (slot,) in cur.fetchall():
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _celery_broker() -> str:
    """Return the broker URL on the local Redis; fail clearly when Redis does not answer."""
    import redis

    url = f"redis://127.0.0.1:6379/{CELERY_REDIS_DB}"
    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at 127.0.0.1:6379 (the Celery broker) does not answer: {error}")
    return url


def _forget_celery_queue(broker: str) -> None:
    """Delete the Redis keys of this run's queue (nothing else lives under its unique name)."""
    import redis

    client = redis.Redis.from_url(broker)
    for key in client.scan_iter(match=f"*{CELERY_QUEUE}*"):
        client.delete(key)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, metadata_database: str, source_database: str
) -> Iterator[dict]:
    """Start the components and a Celery worker on a temp home, lake and spec folder; stop them afterwards."""
    work = tmp_path_factory.mktemp("real-airflow")
    configs, lake, home = work / "dag_configs", work / "lake", work / "airflow"
    configs.mkdir()
    (configs / f"{COMPACTION_DAG}.yaml").write_text(COMPACTION_SPEC)
    (configs / f"{FEATURE_DAG}.yaml").write_text(FEATURE_SPEC)
    (configs / f"{CDC_DAG}.yaml").write_text(CDC_SPEC)
    broker = _celery_broker()
    (configs / f"{PROMOTION_DAG}.yaml").write_text(PROMOTION_SPEC)
    write_order_events(lake, FIRST_DAY, DAYS, events_per_day=60, files_per_day=6, customers=20)
    aged = time.time() - 6 * 3600  # the writer finished hours ago: the days are closed
    for path in [*(lake / EVENTS_TABLE).rglob("*"), lake / EVENTS_TABLE]:
        os.utime(path, (aged, aged))
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW_PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_database,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "DAGFOUNDRY_CONFIG_DIR": str(configs),
        "DAGFOUNDRY_LAKE_ROOT": str(lake),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        # A queue of this run's own: another deployment on the same Redis never takes its tasks.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": CELERY_QUEUE,
        "AIRFLOW_CONN_RT_SHOP": json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": source_database}
        ),
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)  # a deployment, not a unit test
    # mlflow.set_tracking_uri() in an earlier test of this process exports MLFLOW_TRACKING_URI
    # (another test's store): the deployment uses the lake's default store, as the test does.
    env.pop("MLFLOW_TRACKING_URI", None)
    launcher = [sys.executable, str(ROOT / "include" / "airflow_local.py")]
    started = subprocess.run([*launcher, "start", "--environment", "inherit"], env=env, capture_output=True, text=True)
    try:
        assert started.returncode == 0, f"airflow_local.py start failed:\n{started.stdout}\n{started.stderr[-4000:]}"
        api = AirflowApi(f"http://127.0.0.1:{port}")
        api.wait_for(
            "the DAGs to be parsed",
            lambda: {COMPACTION_DAG, FEATURE_DAG, CDC_DAG, PROMOTION_DAG} <= {d["dag_id"] for d in api.call("GET", "/dags")["dags"]},
            timeout=120,
        )
        for dag_id in (COMPACTION_DAG, FEATURE_DAG, CDC_DAG, PROMOTION_DAG):
            api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        yield {"api": api, "configs": configs, "lake": lake, "home": home, "port": port, "source": source_database}
    finally:
        stopped = subprocess.run([*launcher, "stop", "--environment", "inherit"], env=env, capture_output=True, text=True)
        _forget_celery_queue(broker)
        leftovers = _processes_marked(home)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert not leftovers, f"processes outlived `airflow_local.py stop`: {leftovers}"


def _processes_marked(home: Path) -> list[int]:
    from include.airflow_local import MARKER, _all_pids, _environ_of

    return [pid for pid in _all_pids() if _environ_of(pid).get(MARKER) == str(home.resolve())]


def _parquet_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet"))


def test_triggered_dry_run_over_rest_plans_and_changes_nothing(deployment: dict) -> None:
    api, lake = deployment["api"], deployment["lake"]
    before = _parquet_files(lake / EVENTS_TABLE)
    run = api.call("POST", f"/dags/{COMPACTION_DAG}/dagRuns", json={"logical_date": None, "conf": {"dry_run": True}})
    states = api.wait_for_runs(COMPACTION_DAG, [run["dag_run_id"]], timeout=180)
    assert states[run["dag_run_id"]] == "success", api.failure_report(COMPACTION_DAG, run["dag_run_id"])
    assert api.call("GET", f"/dags/{COMPACTION_DAG}/dagRuns/{run['dag_run_id']}")["conf"] == {"dry_run": True}
    assert _parquet_files(lake / EVENTS_TABLE) == before, "a dry run changed the table"


def test_backfill_over_rest_writes_each_day(deployment: dict) -> None:
    import duckdb

    api, lake = deployment["api"], deployment["lake"]
    days = [FIRST_DAY + dt.timedelta(days=n) for n in (2, 3)]
    backfill = api.call(
        "POST",
        "/backfills",
        json={
            "dag_id": FEATURE_DAG,
            # Runs sit at 02:00: the range from the first day's midnight to the day after the last covers both.
            "from_date": f"{days[0].isoformat()}T00:00:00Z",
            "to_date": f"{(days[-1] + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
            "max_active_runs": 2,
            "reprocess_behavior": "none",
        },
    )

    def backfill_runs() -> list[str] | None:
        runs = api.call("GET", f"/dags/{FEATURE_DAG}/dagRuns", params={"run_type": "backfill", "limit": 100})
        ids = [r["dag_run_id"] for r in runs["dag_runs"]]
        return ids if len(ids) == len(days) else None

    run_ids = api.wait_for(f"backfill {backfill['id']} to create its runs", backfill_runs, timeout=60)
    states = api.wait_for_runs(FEATURE_DAG, run_ids, timeout=300)
    assert all(s == "success" for s in states.values()), {r: api.failure_report(FEATURE_DAG, r) for r in run_ids}
    # Unpausing also scheduled the latest interval (a day without events: its dates are skipped);
    # that run succeeds too, materialize_online included.
    scheduled = api.call("GET", f"/dags/{FEATURE_DAG}/dagRuns", params={"run_type": "scheduled", "limit": 100})
    latest = [r["dag_run_id"] for r in scheduled["dag_runs"]]
    assert latest, f"unpausing {FEATURE_DAG} scheduled no run"
    states = api.wait_for_runs(FEATURE_DAG, latest, timeout=300)
    assert all(s == "success" for s in states.values()), {r: api.failure_report(FEATURE_DAG, r) for r in latest}

    offline = lake / "features" / FEATURE_DAG
    written = sorted(p.name for p in offline.glob("feature_date=*"))
    assert written == [f"feature_date={d.isoformat()}" for d in days]
    events = str(lake / EVENTS_TABLE / "**" / "*.parquet")
    for day in days:
        expected = dict(
            duckdb.sql(
                f"SELECT customer_id, count(*) FROM read_parquet('{events}', hive_partitioning = false) "
                f"WHERE ordered_at >= TIMESTAMPTZ '{day} 00:00:00+00' "
                f"AND ordered_at < TIMESTAMPTZ '{day} 00:00:00+00' + INTERVAL 1 DAY GROUP BY 1"
            ).fetchall()
        )
        got = dict(
            duckdb.sql(
                f"SELECT customer_id, orders_1d FROM read_parquet('{offline / f'feature_date={day}'}/*.parquet') "
                "WHERE orders_1d > 0"
            ).fetchall()
        )
        assert expected and got == expected, f"orders_1d of {day}"


def test_ui_lists_the_dags(deployment: dict, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/ensure_system_packages.sh installs it"
    url = f"http://127.0.0.1:{deployment['port']}/dags"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--virtual-time-budget=15000"]
    screenshot = tmp_path / "dags.png"
    shot = subprocess.run([chromium, *flags, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert COMPACTION_DAG in dom and FEATURE_DAG in dom, dom[-2000:]
    if os.environ.get("DAGFOUNDRY_KEEP_SCREENSHOTS"):
        shutil.copy(screenshot, os.environ["DAGFOUNDRY_KEEP_SCREENSHOTS"])


def test_broken_spec_shows_an_import_error_and_the_other_dags_stay(deployment: dict) -> None:
    api, configs = deployment["api"], deployment["configs"]
    (configs / "rt_broken.yaml").write_text(
        textwrap.dedent(
            """\
            kind: lake_compaction
            name: rt_broken
            tables: [events/orders]
            target_file_sise: 1MB
            """
        )
    )

    def broken_reported() -> list[str] | None:
        errors = api.call("GET", "/importErrors")["import_errors"]
        messages = [e["stack_trace"] for e in errors if "rt_broken.yaml" in e["stack_trace"]]
        return messages or None

    (message,) = api.wait_for("the import error of rt_broken.yaml", broken_reported, timeout=120)
    assert "rt_broken.yaml:4:1: target_file_sise" in message, message
    dags = {d["dag_id"] for d in api.call("GET", "/dags")["dags"]}
    assert {COMPACTION_DAG, FEATURE_DAG} <= dags and "rt_broken" not in dags


def test_cdc_run_triggered_over_rest_mirrors_the_source_on_the_celery_worker(deployment: dict) -> None:
    import psycopg2
    import pyarrow.parquet as pq

    api, lake = deployment["api"], deployment["lake"]
    run = api.call("POST", f"/dags/{CDC_DAG}/dagRuns", json={"logical_date": None})
    states = api.wait_for_runs(CDC_DAG, [run["dag_run_id"]], timeout=420)
    assert states[run["dag_run_id"]] == "success", api.failure_report(CDC_DAG, run["dag_run_id"])

    mirror = pq.read_table(lake / "mirror" / "rtshop" / "public.customers")
    got = sorted(zip(*(mirror.column(c).to_pylist() for c in ("customer_id", "name", "city")), strict=True))
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=deployment["source"]) as source:
        with source.cursor() as cur:
            cur.execute("SELECT customer_id, name, city FROM customers ORDER BY 1")
            expected = cur.fetchall()
    source.close()
    assert len(expected) == 120 and got == expected


def test_every_task_ran_through_the_celery_queue(deployment: dict) -> None:
    api, home = deployment["api"], deployment["home"]
    worker_log = (home / "local" / "celery-worker.log").read_text(errors="replace")
    for dag_id in (CDC_DAG, FEATURE_DAG):
        # The triggered CDC run and the feature backfill's runs (unpausing also schedules a latest run).
        runs = api.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "state": "success"})["dag_runs"]
        assert runs, f"no successful run of {dag_id}"
        for dag_run in runs:
            tis = api.call("GET", f"/dags/{dag_id}/dagRuns/{dag_run['dag_run_id']}/taskInstances")["task_instances"]
            ran = [t for t in tis if t["state"] == "success"]
            assert ran and {t["queue"] for t in ran} == {CELERY_QUEUE}, [(t["task_id"], t["queue"]) for t in tis]
            for ti in ran:
                assert str(ti["id"]) in worker_log, f"{dag_id}.{ti['task_id']} is not in the Celery worker's log"
def test_promotion_waits_for_a_person_and_promotes_when_approved_over_rest(deployment: dict) -> None:
    import importlib.util

    import mlflow

    from dagfoundry.models.tracking import configure, local_default
    from dagfoundry.promotion.switch import alias_version

    api, lake = deployment["api"], deployment["lake"]
    zoo_path = ROOT / "tests" / "integration" / "promotion" / "promotion_zoo.py"
    loader = importlib.util.spec_from_file_location("promotion_zoo", zoo_path)
    assert loader and loader.loader
    zoo = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(zoo)
    champion = zoo.register("rt_model", "north", lake)
    configure(local_default(lake))
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("rt_model", "champion", champion)
    challenger = zoo.register("rt_model", "all", lake)

    run_id = api.call("POST", f"/dags/{PROMOTION_DAG}/dagRuns", json={"logical_date": None})["dag_run_id"]
    hitl = f"/dags/{PROMOTION_DAG}/dagRuns/{run_id}/taskInstances/request_approval/-1"

    def awaiting_approval() -> bool:
        run = api.call("GET", f"/dags/{PROMOTION_DAG}/dagRuns/{run_id}")
        assert run["state"] not in ("failed", "success"), f"run ended before asking: {api.failure_report(PROMOTION_DAG, run_id)}"
        return api.call("GET", hitl)["state"] == "awaiting_input"

    try:
        api.wait_for("the approval request", awaiting_approval, timeout=300)
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; tasks: {api.failure_report(PROMOTION_DAG, run_id)}") from None
    request = api.call("GET", f"{hitl}/hitlDetails")
    assert request["subject"] == f"Promote rt_model v{challenger} to champion?" and "| roc_auc |" in request["body"]
    assert alias_version(client, "rt_model", "champion") == champion
    api.call("PATCH", f"{hitl}/hitlDetails", json={"chosen_options": ["Approve"], "params_input": {}})
    states = api.wait_for_runs(PROMOTION_DAG, [run_id], timeout=180)
    assert states[run_id] == "success", api.failure_report(PROMOTION_DAG, run_id)
    assert alias_version(client, "rt_model", "champion") == challenger
    assert alias_version(client, "rt_model", "previous_champion") == champion
