"""DebeziumConnectHook and the connect-mode operators against a FAKE Kafka Connect REST API."""

from __future__ import annotations

import json
import logging

import pytest

from dagfoundry.hooks.debezium_connect import (
    ConnectorConfigInvalidError,
    DebeziumConnectHook,
    KafkaConnectError,
    assess_status,
    connect_settings,
)
from dagfoundry.operators.debezium_connect import (
    DebeziumConnectorDeployOperator,
    DebeziumConnectorResetOffsetsOperator,
    DebeziumConnectorRestartOperator,
    DebeziumConnectorStateOperator,
)
from tests.fakes.kafka_connect import FakeKafkaConnect

NAME = "pg-orders"
CONFIG = {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "topic.prefix": "shop",
    "database.hostname": "db.internal",
    "plugin.name": "pgoutput",
    "tasks.max": 1,
    "provide.transaction.metadata": False,
}


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    with FakeKafkaConnect() as fake:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KAFKA_CONNECT_TEST",
            json.dumps({"conn_type": "http", "host": fake.url, "login": "admin", "password": "connect-s3cret"}),
        )
        yield fake


@pytest.fixture
def hook(connect: FakeKafkaConnect) -> DebeziumConnectHook:
    return DebeziumConnectHook("kafka_connect_test", max_retries=3, backoff_seconds=0.01)


def test_upsert_creates_then_updates_and_renders_java_strings(hook, connect):
    assert hook.upsert_connector(NAME, CONFIG) is True
    assert hook.upsert_connector(NAME, {**CONFIG, "topic.prefix": "shop2"}) is False
    stored = connect.connectors[NAME].config
    assert stored["topic.prefix"] == "shop2"
    assert stored["provide.transaction.metadata"] == "false"
    assert stored["tasks.max"] == "1"
    assert stored["name"] == NAME


def test_validate_fails_with_every_validator_message(hook):
    bad = {k: v for k, v in CONFIG.items() if k not in ("topic.prefix", "database.hostname")}
    with pytest.raises(ConnectorConfigInvalidError) as caught:
        hook.validate_config(NAME, bad)
    message = str(caught.value)
    assert NAME in message and "2 error(s)" in message
    assert "topic.prefix: The 'topic.prefix' value is invalid: A value is required" in message
    assert "database.hostname" in message


def test_validate_accepts_a_complete_config(hook):
    assert hook.validate_config(NAME, CONFIG)["error_count"] == 0


def test_conflict_is_retried_until_success(hook, connect):
    connect.add_fault("PUT", f"/connectors/{NAME}/config", 409, message="rebalance in progress", times=2)
    assert hook.upsert_connector(NAME, CONFIG) is True
    assert connect.calls("PUT", f"/connectors/{NAME}/config") == 3
    assert NAME in connect.connectors


def test_server_timeouts_exhaust_retries_with_a_clear_error(hook, connect):
    connect.add_fault("GET", f"/connectors/{NAME}/status", 500, message="Request timed out", times=10)
    hook.upsert_connector(NAME, CONFIG)
    with pytest.raises(KafkaConnectError) as caught:
        hook.get_status(NAME)
    assert caught.value.status_code == 500
    assert "Request timed out" in str(caught.value) and "4 attempt(s)" in str(caught.value)
    assert connect.calls("GET", f"/connectors/{NAME}/status") == 4


def test_not_found_fails_at_once_with_the_worker_message(hook, connect):
    with pytest.raises(KafkaConnectError) as caught:
        hook.get_status("missing")
    assert caught.value.status_code == 404
    assert "No status found for connector missing" in str(caught.value)
    assert "'missing'" in str(caught.value)
    assert connect.calls("GET", "/connectors/missing/status") == 1


def test_slow_answer_times_out_on_the_client_and_is_retried(connect, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_CONNECT_SLOW",
        json.dumps({"conn_type": "http", "host": connect.url, "extra": {"timeout": 0.2}}),
    )
    hook = DebeziumConnectHook("kafka_connect_slow", max_retries=2, backoff_seconds=0.01)
    connect.add_fault("GET", "/", None, delay=0.6, times=1)
    ok, message = hook.test_connection()
    assert ok, message
    assert "4.1.0-fake" in message
    assert connect.calls("GET", "/") == 2


def test_unreachable_worker_is_reported_after_retries(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_DOWN", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9}))
    hook = DebeziumConnectHook("kafka_connect_down", max_retries=1, backoff_seconds=0.01)
    with pytest.raises(KafkaConnectError, match="got no answer .*gave up after 2 attempt"):
        hook.get_status(NAME)


def test_connection_settings_build_the_base_url_and_never_log_the_password(connect, caplog):
    from airflow.sdk import BaseHook

    settings = connect_settings(BaseHook.get_connection("kafka_connect_test"))
    assert settings.base_url == connect.url
    assert settings.auth == ("admin", "connect-s3cret")
    hook = DebeziumConnectHook("kafka_connect_test", max_retries=0)
    with caplog.at_level(logging.DEBUG):
        hook.upsert_connector(NAME, CONFIG)
        with pytest.raises(KafkaConnectError):
            hook.get_status("missing")
    assert "connect-s3cret" not in caplog.text


def test_status_assessment_of_running_failed_and_pending():
    running = {"name": "c", "connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
    failed = {"name": "c", "connector": {"state": "RUNNING"},
              "tasks": [{"id": 0, "state": "FAILED", "trace": "org.apache.kafka.connect.errors.ConnectException: boom"}]}
    stopped = {"name": "c", "connector": {"state": "STOPPED"}, "tasks": []}
    assert assess_status(running).state == "running"
    verdict = assess_status(failed)
    assert verdict.state == "failed" and "ConnectException: boom" in verdict.trace
    assert assess_status(stopped).state == "pending"
    assert assess_status({"name": "c", "connector": {"state": "RUNNING"}, "tasks": []}).state == "pending"


def test_restart_failed_heals_the_task(hook, connect):
    hook.upsert_connector(NAME, CONFIG)
    connect.fail_task(NAME, 0, trace="java.lang.IllegalStateException: slot is gone")
    assert assess_status(hook.get_status(NAME)).state == "failed"
    DebeziumConnectorRestartOperator(task_id="restart", connector_name=NAME, kafka_connect_conn_id="kafka_connect_test").execute({})
    assert assess_status(hook.get_status(NAME)).state == "running"


def test_pause_resume_stop_change_the_state(hook, connect):
    hook.upsert_connector(NAME, CONFIG)
    for action, expected in (("pause", "PAUSED"), ("resume", "RUNNING"), ("stop", "STOPPED")):
        DebeziumConnectorStateOperator(
            task_id=action, connector_name=NAME, action=action, kafka_connect_conn_id="kafka_connect_test"
        ).execute({})
        assert hook.get_status(NAME)["connector"]["state"] == expected


def test_unknown_state_action_is_rejected_by_name(connect):
    op = DebeziumConnectorStateOperator(task_id="x", connector_name=NAME, action="explode", kafka_connect_conn_id="kafka_connect_test")
    with pytest.raises(KafkaConnectError, match="'explode' is not one of pause, resume, stop"):
        op.execute({})


def test_offsets_cannot_change_while_running(hook, connect):
    hook.upsert_connector(NAME, CONFIG)
    with pytest.raises(KafkaConnectError, match="STOPPED state before their offsets can be modified") as caught:
        hook.call("DELETE", f"/connectors/{NAME}/offsets", connector=NAME)
    assert caught.value.status_code == 400


def test_reset_offsets_stops_deletes_and_resumes(hook, connect):
    hook.upsert_connector(NAME, CONFIG)
    assert hook.get_offsets(NAME)
    message = DebeziumConnectorResetOffsetsOperator(
        task_id="reset", connector_name=NAME, kafka_connect_conn_id="kafka_connect_test", poll_interval=0.01
    ).execute({})
    assert "reset successfully" in message
    assert connect.calls("DELETE", f"/connectors/{NAME}/offsets") == 1
    assert connect.connectors[NAME].snapshots == 2, "resumed without offsets, the connector snapshots again"
    assert hook.get_offsets(NAME)[0]["offset"]["snapshot"] == "last"
    assert hook.get_status(NAME)["connector"]["state"] == "RUNNING"


def test_alter_offsets_patches_one_partition(hook, connect):
    hook.upsert_connector(NAME, CONFIG)
    new = [{"partition": {"server": "shop"}, "offset": {"lsn": 42, "lsn_proc": 42}}]
    message = hook.reset_offsets(NAME, offsets=new, resume=False, poll_interval=0.01)
    assert "altered successfully" in message
    assert hook.get_offsets(NAME) == new
    assert hook.get_status(NAME)["connector"]["state"] == "STOPPED"


def test_deploy_injects_source_credentials_and_keeps_them_out_of_logs_and_xcom(connect, monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHOP_DB",
        json.dumps({"conn_type": "postgres", "host": "pg.internal", "port": 5432, "login": "debezium",
                    "password": "pg-Pa55word", "schema": "shop"}),
    )
    config = {k: v for k, v in CONFIG.items() if k != "database.hostname"}
    op = DebeziumConnectorDeployOperator(
        task_id="deploy", connector_name=NAME, config=config, source_conn_id="shop_db",
        kafka_connect_conn_id="kafka_connect_test", backoff_seconds=0.01,
    )
    with caplog.at_level(logging.INFO):
        result = op.execute({})
    assert result == {"connector": NAME, "created": True}
    stored = connect.connectors[NAME].config
    assert stored["database.password"] == "pg-Pa55word"
    assert stored["database.hostname"] == "pg.internal" and stored["database.user"] == "debezium"
    assert stored["database.port"] == "5432" and stored["database.dbname"] == "shop"
    assert "pg-Pa55word" not in caplog.text and "pg-Pa55word" not in json.dumps(result)
    assert "pg-Pa55word" not in json.dumps(op.config)


def test_deploy_refuses_an_invalid_config_before_touching_the_connector(connect):
    op = DebeziumConnectorDeployOperator(
        task_id="deploy", connector_name=NAME, config={"connector.class": CONFIG["connector.class"]},
        kafka_connect_conn_id="kafka_connect_test",
    )
    from airflow.sdk.exceptions import AirflowFailException

    # A rejected config stays rejected: the task fails at once instead of retrying for minutes.
    with pytest.raises(AirflowFailException, match="topic.prefix") as caught:
        op.execute({})
    assert isinstance(caught.value.__cause__, ConnectorConfigInvalidError)
    assert NAME not in connect.connectors


def test_operator_on_an_unknown_connector_fails_at_once_and_a_server_error_keeps_the_retries(connect):
    from airflow.sdk.exceptions import AirflowFailException

    restart = DebeziumConnectorRestartOperator(task_id="restart", connector_name="missing",
                                               kafka_connect_conn_id="kafka_connect_test")
    with pytest.raises(AirflowFailException, match="'missing'.*404"):
        restart.execute({})

    connect.add_fault("POST", "/connectors/missing/restart", 503, message="worker busy", times=10)
    with pytest.raises(KafkaConnectError) as caught:
        restart.execute({})
    assert not isinstance(caught.value, AirflowFailException) and caught.value.status_code == 503


def test_names_cannot_escape_their_path_segment(hook, connect):
    with pytest.raises(KafkaConnectError) as caught:
        hook.get_status("../connector-plugins")
    assert caught.value.status_code == 404
    assert connect.requests[-1] == ("GET", "/connectors/..%2Fconnector-plugins/status")
