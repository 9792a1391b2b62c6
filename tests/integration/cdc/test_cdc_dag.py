"""The cdc_ingestion kind end to end through Airflow: spec -> DAG -> dag.test() -> lake mirror == PostgreSQL.

Real PostgreSQL (logical replication), the real Debezium engine, and the mirror job on both
engines: DuckDB in the task (``duckdb_mirror``, the default) and real Spark (``spark_mirror``,
spark-submit through the apache-spark provider's operator).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPEC = """\
kind: cdc_ingestion
name: shop_cdc_e2e
schedule: "*/15 * * * *"
source:
  name: shope2e
  conn_id: shop_e2e
tables:
  - name: public.customers
    primary_key: [customer_id]
  - name: public.orders
capture:
  idle: 3s
  max_duration: 3m
"""


#: a second source whose date key holds 'infinity' (no lake date: a null key in the batch),
#: mirrored on Spark
BAD_KEY_SPEC = """\
kind: cdc_ingestion
name: shop_cdc_badkey
engine: spark
schedule: "*/15 * * * *"
source:
  name: shopbadkey
  conn_id: shop_e2e
tables:
  - name: public.dk_dates
  - name: public.dk_fine
capture:
  idle: 3s
  max_duration: 3m
"""


@pytest.fixture(scope="module")
def cdc_env(cdc_database, source_sql, tmp_path_factory):
    source_sql(
        "CREATE TABLE dk_dates (d date PRIMARY KEY, v text);"
        "INSERT INTO dk_dates VALUES ('2024-01-01', 'a'), ('infinity', 'never');"
        "CREATE TABLE dk_fine (id int PRIMARY KEY, v text);"
        "INSERT INTO dk_fine SELECT g, 'fine ' || g FROM generate_series(1, 40) g;"
    )
    source_sql(
        "CREATE TABLE customers (customer_id int PRIMARY KEY, name text, city text);"
        "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id int, amount numeric(10,2), note text);"
        "INSERT INTO customers SELECT g, 'customer ' || g, CASE WHEN g % 2 = 0 THEN 'Zürich' END FROM generate_series(1, 50) g;"
        "INSERT INTO orders SELECT g, 1 + g % 50, g * 1.25, 'order ' || g FROM generate_series(1, 200) g;"
    )
    root = tmp_path_factory.mktemp("cdc_dag")
    (root / "configs").mkdir()
    (root / "configs" / "shop.yaml").write_text(SPEC)
    (root / "configs" / "shop_badkey.yaml").write_text(BAD_KEY_SPEC)
    monkeypatch = pytest.MonkeyPatch()
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": cdc_database}
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_E2E", json.dumps(connection))
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(root / "lake"))
    # dag.test() re-parses the dags folder to serialize the DAG: it must find this spec there.
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(root / "configs"))
    yield root
    monkeypatch.undo()


def build_dag(config_dir: Path, dag_id: str = "shop_cdc_e2e"):
    """Load the DAG the way Airflow does: parse dags/ with the config folder in the environment."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def mirror_rows(lake: Path, table_id: str, columns: list[str], source: str = "shope2e") -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(lake / "mirror" / source / table_id)
    rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
    return sorted(tuple(None if v is None else str(v) for v in row) for row in rows)


def source_rows(source_sql, table: str, columns: list[str]) -> list[tuple]:
    rows = source_sql(f"SELECT {', '.join(columns)} FROM {table}", fetch=True)
    return sorted(tuple(None if v is None else str(v) for v in row) for row in rows)


def assert_mirrors_equal_source(source_sql, lake: Path) -> None:
    customers = ["customer_id", "name", "city"]
    orders = ["order_id", "customer_id", "amount", "note"]
    assert mirror_rows(lake, "public.customers", customers) == source_rows(source_sql, "customers", customers)
    assert mirror_rows(lake, "public.orders", orders) == source_rows(source_sql, "orders", orders)


@pytest.mark.integration
def test_scheduled_runs_keep_the_mirrors_equal_to_the_source(airflow_db, cdc_env, source_sql):
    from airflow.sdk import DagRunState

    dag = build_dag(cdc_env / "configs")
    first = dag.test()
    assert first.state == DagRunState.SUCCESS
    assert_mirrors_equal_source(source_sql, cdc_env / "lake")
    published = first.get_task_instance("publish_mirror").xcom_pull(task_ids="publish_mirror")
    assert published["engine"] == "duckdb" and published["tables"]["public.orders"]["engine"] == "duckdb"

    source_sql(
        "UPDATE customers SET city = 'Genève' WHERE customer_id <= 10;"
        "DELETE FROM orders WHERE order_id % 7 = 0;"
        "UPDATE orders SET order_id = order_id + 10000 WHERE order_id BETWEEN 100 AND 110;"
        "INSERT INTO orders VALUES (5000, 3, 99.99, NULL);"
    )
    second = dag.test()
    assert second.state == DagRunState.SUCCESS
    assert_mirrors_equal_source(source_sql, cdc_env / "lake")


@pytest.mark.integration
def test_resnapshot_action_rereads_a_table_and_the_mirror_stays_equal(airflow_db, cdc_env, source_sql):
    from airflow.sdk import DagRunState

    dag = build_dag(cdc_env / "configs")
    dag.test()  # make sure the capture is past its initial snapshot
    source_sql("UPDATE customers SET name = name || ' (vip)' WHERE customer_id = 1;")
    run = dag.test(run_conf={"action": "resnapshot", "tables": ["public.customers"]})
    assert run.state == DagRunState.SUCCESS
    assert run.get_task_instance("request_resnapshot").state == "success"
    assert_mirrors_equal_source(source_sql, cdc_env / "lake")


@pytest.mark.integration
def test_drop_slot_action_decommissions_the_capture(airflow_db, cdc_env, source_sql):
    from airflow.sdk import DagRunState

    dag = build_dag(cdc_env / "configs")
    dag.test()  # the capture holds a slot and a publication
    run = dag.test(run_conf={"action": "drop_slot"})
    assert run.state == DagRunState.SUCCESS
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["drop_slot"] == "success" and states["capture"] == "skipped", states
    assert not source_sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'dagfoundry_shop_cdc_e2e'", fetch=True)
    assert not source_sql("SELECT 1 FROM pg_publication WHERE pubname = 'dagfoundry_shop_cdc_e2e'", fetch=True)


@pytest.mark.integration
def test_a_table_failing_its_quality_checks_fails_the_run_at_its_end_only(airflow_db, cdc_env, source_sql):
    from airflow.sdk import DagRunState

    dag = build_dag(cdc_env / "configs", "shop_cdc_badkey")
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.FAILED
    # The good table went all the way through; only the last task fails (naming the table).
    for task_id in ("capture", "check_quality", "plan_mirror", "spark_mirror", "publish_mirror"):  # engine: spark
        assert states[task_id] == "success", states
    assert states["capture_health"] == "failed", states
    quality = run.get_task_instance("check_quality").xcom_pull(task_ids="check_quality")
    assert set(quality["failed_tables"]) == {"public.dk_dates"}, quality
    lake = cdc_env / "lake"
    columns = ["id", "v"]
    assert mirror_rows(lake, "public.dk_fine", columns, "shopbadkey") == source_rows(source_sql, "dk_fine", columns)
    assert not (lake / "mirror" / "shopbadkey" / "public.dk_dates").exists(), "a batch failing its checks was mirrored"
