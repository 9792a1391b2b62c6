"""The CDC trigger form offers what the spec's mode can do, and connect mode acts through Kafka Connect.

Kafka Connect is the FAKE REST API of tests/fakes (no worker can run here); nothing in these
tests touches a database: a connect-mode reset must not need one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors
from dagfoundry.hooks.debezium_connect import DebeziumConnectHook
from tests.fakes.kafka_connect import FakeKafkaConnect

BASE = """\
kind: cdc_ingestion
name: orders_cdc
source: {name: shop, conn_id: shop_pg}
tables:
  - name: public.orders
    primary_key: [order_id]
"""
CONNECT = BASE + "mode: connect\nconnect:\n  conn_id: kafka_connect_test\n  sink_dir: /data/sink/shop\n"
CONNECTOR = "dagfoundry-shop"


def offered(dag) -> list[str]:
    return dag.params.get_param("action").schema["enum"]


def choose(dag, action: str) -> list[str]:
    return dag.get_task("choose_action").python_callable(params={"action": action})


def test_embedded_form_offers_no_connector_action(load):
    dag = build_dag(load(BASE))
    assert offered(dag) == ["capture", "resnapshot", "reset_offsets", "drop_slot"]
    assert "restart_connector" not in dag.task_ids
    assert "restart_connector" not in dag.params.get_param("action").description


def test_an_action_the_mode_lacks_fails_at_once_without_retries(load):
    dag = build_dag(load(BASE))
    with pytest.raises(AirflowFailException, match="'restart_connector' is not available.*capture, resnapshot"):
        choose(dag, "restart_connector")
    assert choose(dag, "capture") == ["capture"] and choose(dag, "drop_slot") == ["drop_slot"]


def test_connect_form_offers_the_connector_actions(load):
    dag = build_dag(load(CONNECT))
    assert offered(dag) == ["capture", "resnapshot", "reset_offsets", "restart_connector", "drop_slot"]
    assert choose(dag, "drop_slot") == ["stop_connector"]
    assert set(dag.get_task("stop_connector").downstream_task_ids) == {"drop_slot"}
    assert not dag.get_task("drop_slot").downstream_task_ids


@pytest.mark.parametrize(
    ("extra", "missing"),
    [("capture: {snapshot_mode: no_data}\n", "reset_offsets"), ("capture: {signal_table: null}\n", "resnapshot")],
)
def test_actions_that_could_not_work_are_not_offered(load, extra, missing):
    for text in (BASE + extra, CONNECT + extra):
        dag = build_dag(load(text))
        assert missing not in offered(dag)
        task_id = "request_resnapshot" if missing == "resnapshot" else missing
        assert task_id not in dag.task_ids, "a task of an action not offered would run as a root on every run"
        with pytest.raises(AirflowFailException):
            choose(dag, missing)


def test_a_default_action_of_another_mode_is_a_located_error(load):
    with pytest.raises(SpecErrors) as caught:
        load(BASE + "params: {action: restart_connector}\n")
    (error,) = caught.value.errors
    assert error.key == "params.action" and "capture, resnapshot, reset_offsets, drop_slot" in error.message


def test_embedded_resnapshot_of_an_uncaptured_table_fails_at_once(load, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_PG", json.dumps({"conn_type": "postgres", "host": "127.0.0.1"}))
    dag = build_dag(load(BASE))
    with pytest.raises(AirflowFailException, match="public.customers not captured"):
        dag.get_task("request_resnapshot").python_callable(params={"tables": ["public.customers"]})


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with FakeKafkaConnect() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_TEST", json.dumps({"conn_type": "http", "host": fake.url}))
        monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(tmp_path / "lake"))
        config = {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "topic.prefix": "shop",
                  "database.hostname": "db", "tasks.max": "1"}
        DebeziumConnectHook("kafka_connect_test").upsert_connector(CONNECTOR, config)
        yield fake


def test_connect_reset_deletes_the_connector_offsets_so_a_new_snapshot_comes(load, connect, tmp_path):
    dag = build_dag(load(CONNECT))
    assert choose(dag, "reset_offsets") == ["reset_offsets"]
    assert "deploy_connector" in dag.get_task("reset_offsets").downstream_task_ids
    before = connect.connectors[CONNECTOR]
    assert before.snapshots == 1

    dag.get_task("reset_offsets").execute({})

    after = connect.connectors[CONNECTOR]
    assert connect.calls("PUT", f"/connectors/{CONNECTOR}/stop") == 1
    assert connect.calls("DELETE", f"/connectors/{CONNECTOR}/offsets") == 1
    assert after.state == "RUNNING" and after.snapshots == 2, "resumed without offsets: Debezium snapshots again"
    assert not (tmp_path / "lake").exists(), "no embedded offsets moved and no mirror floor written"


def test_connect_restart_restarts_the_failed_task(load, connect):
    dag = build_dag(load(CONNECT))
    connect.fail_task(CONNECTOR, 0, trace="ConnectException: boom")
    dag.get_task("restart_connector").execute({})
    assert connect.connectors[CONNECTOR].tasks[0]["state"] == "RUNNING"


def test_connector_running_defers_when_airflow_defaults_to_deferrable(load, monkeypatch):
    assert build_dag(load(CONNECT)).get_task("connector_running").deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert build_dag(load(CONNECT)).get_task("connector_running").deferrable is True
    spec_says_no = CONNECT + "  deferrable: false\n"
    assert build_dag(load(spec_says_no)).get_task("connector_running").deferrable is False
