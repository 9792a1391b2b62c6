"""The re-snapshot operator: connector checked on a FAKE Kafka Connect, signal row in the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from dagfoundry.hooks.debezium_connect import DebeziumConnectHook
from dagfoundry.operators.debezium_connect import DebeziumResnapshotOperator
from tests.fakes.kafka_connect import FakeKafkaConnect

pytestmark = pytest.mark.integration
NAME = "pg-orders"


@pytest.fixture
def postgres_schema(monkeypatch: pytest.MonkeyPatch):
    """A throwaway schema in the local PostgreSQL (trust auth for postgres on 127.0.0.1)."""
    import psycopg2

    dsn = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
    try:
        conn = psycopg2.connect(**dsn, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"the local PostgreSQL at 127.0.0.1:5432 is required (scripts/ensure_postgres_logical.sh): {exc}")
    conn.autocommit = True
    schema = f"df_signal_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(f'CREATE TABLE "{schema}".debezium_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)')
    source = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "postgres"}
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_DB", json.dumps(source))
    try:
        yield conn, schema
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    with FakeKafkaConnect() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_TEST", json.dumps({"conn_type": "http", "host": fake.url}))
        DebeziumConnectHook("kafka_connect_test").upsert_connector(
            NAME, {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "topic.prefix": "shop"}
        )
        yield fake


def operator(schema: str, connector: str = NAME, tables=("public.orders",)) -> DebeziumResnapshotOperator:
    return DebeziumResnapshotOperator(
        task_id="resnapshot", connector_name=connector, kafka_connect_conn_id="kafka_connect_test",
        source_conn_id="shop_db", signal_table=f"{schema}.debezium_signal", tables=None if tables is None else list(tables),
        captured_tables=["public.orders", "public.customers"], backoff_seconds=0.01,
    )


def test_resnapshot_inserts_one_signal_even_when_retried(connect, postgres_schema):
    conn, schema = postgres_schema
    context = {"ti": SimpleNamespace(dag_id="cdc_shop", run_id="manual__1", task_id="resnapshot")}
    first = operator(schema).execute(context)
    second = operator(schema).execute(context)
    assert first == second
    with conn.cursor() as cur:
        cur.execute(f'SELECT id, type, data FROM "{schema}".debezium_signal')
        got = cur.fetchall()
    assert len(got) == 1 and got[0][1] == "execute-snapshot"
    assert json.loads(got[0][2]) == {"data-collections": ["public.orders"], "type": "incremental"}


def test_unknown_connector_fails_at_once_before_any_signal(connect, postgres_schema):
    from airflow.sdk.exceptions import AirflowFailException

    conn, schema = postgres_schema
    # A 404 stays a 404 on the next try: the task fails without spending its retries.
    with pytest.raises(AirflowFailException, match="No status found for connector typo"):
        operator(schema, connector="typo").execute({})
    with conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{schema}".debezium_signal')
        assert cur.fetchone()[0] == 0


def test_tables_come_from_the_run_params_and_empty_means_all_captured(connect, postgres_schema):
    conn, schema = postgres_schema
    context = {"ti": SimpleNamespace(dag_id="cdc_shop", run_id="manual__2", task_id="resnapshot"), "params": {"tables": []}}
    result = operator(schema, tables=None).execute(context)
    assert result["tables"] == ["public.orders", "public.customers"]
    with conn.cursor() as cur:
        cur.execute(f'SELECT data FROM "{schema}".debezium_signal')
        (data,) = cur.fetchone()
    assert json.loads(data)["data-collections"] == ["public.orders", "public.customers"]


def test_a_table_not_captured_fails_at_once(connect, postgres_schema):
    from airflow.sdk.exceptions import AirflowFailException

    _, schema = postgres_schema
    context = {"params": {"tables": ["public.invoices"]}}
    with pytest.raises(AirflowFailException, match="public.invoices"):
        operator(schema, tables=None).execute(context)
