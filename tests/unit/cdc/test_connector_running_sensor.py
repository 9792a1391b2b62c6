"""ConnectorRunningSensor and ConnectorRunningTrigger against a FAKE Kafka Connect REST API."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred

from dagfoundry.hooks.debezium_connect import ConnectorFailedError, DebeziumConnectHook
from dagfoundry.sensors.debezium_connect import ConnectorRunningSensor
from dagfoundry.triggers.debezium_connect import ConnectorRunningTrigger
from tests.fakes.kafka_connect import FakeKafkaConnect

NAME = "pg-orders"
CONFIG = {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "topic.prefix": "shop",
          "database.hostname": "db"}
TRACE = "org.apache.kafka.connect.errors.ConnectException: replication slot \"dbz\" is active\n\tat io.debezium..."


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    with FakeKafkaConnect(pending_polls_after_change=2) as fake:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KAFKA_CONNECT_TEST",
            json.dumps({"conn_type": "http", "host": fake.url, "login": "admin", "password": "connect-s3cret"}),
        )
        DebeziumConnectHook("kafka_connect_test").upsert_connector(NAME, CONFIG)
        yield fake


def sensor(**kwargs) -> ConnectorRunningSensor:
    defaults = {"task_id": "wait", "connector_name": NAME, "kafka_connect_conn_id": "kafka_connect_test",
                "poke_interval": 0.01, "timeout": 10, "backoff_seconds": 0.01, "deferrable": True}
    return ConnectorRunningSensor(**{**defaults, **kwargs})


def first_event(trigger: ConnectorRunningTrigger) -> dict:
    """Run the trigger's async generator to its first event, as the triggerer would."""

    async def run() -> dict:
        generator = trigger.run()
        try:
            return (await generator.__anext__()).payload
        finally:
            await generator.aclose()

    return asyncio.run(run())


def roundtrip(trigger: ConnectorRunningTrigger) -> ConnectorRunningTrigger:
    """Rebuild the trigger from its serialized form, as the triggerer does."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


def test_defers_while_pending_and_succeeds_through_the_trigger(connect):
    task = sensor()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({})
    assert deferred.value.method_name == "execute_complete"
    trigger = roundtrip(deferred.value.trigger)
    event = first_event(trigger)
    assert event["status"] == "success", event
    assert task.execute_complete({}, event, **deferred.value.kwargs) is None


def test_running_connector_needs_no_deferral(connect):
    connect.connectors[NAME].pending_polls = 0
    sensor().execute({})  # no TaskDeferred raised


def test_serialized_trigger_holds_a_connection_id_and_no_credentials(connect):
    trigger = ConnectorRunningTrigger(connector_name=NAME, kafka_connect_conn_id="kafka_connect_test")
    classpath, kwargs = trigger.serialize()
    assert classpath == "dagfoundry.triggers.debezium_connect.ConnectorRunningTrigger"
    text = json.dumps(kwargs)
    assert "kafka_connect_test" in text and "connect-s3cret" not in text and "admin" not in text


def test_fails_fast_on_failed_task_with_the_worker_trace(connect):
    connect.connectors[NAME].pending_polls = 0
    connect.fail_task(NAME, 0, trace=TRACE)
    with pytest.raises(ConnectorFailedError) as caught:
        sensor(max_restarts=0).execute({})
    assert "task(s) 0 FAILED" in str(caught.value)
    assert 'replication slot "dbz" is active' in caught.value.trace
    assert 'replication slot "dbz" is active' in str(caught.value)


def test_trigger_reports_failure_with_trace_and_sensor_restarts_then_succeeds(connect):
    task = sensor(max_restarts=1)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({})
    connect.connectors[NAME].pending_polls = 0
    connect.fail_task(NAME, 0, trace=TRACE)
    event = first_event(roundtrip(deferred.value.trigger))
    assert event["status"] == "failed" and "ConnectException" in event["trace"]

    resumed = sensor(max_restarts=1)  # the worker builds a fresh operator to resume
    with pytest.raises(TaskDeferred) as again:
        resumed.execute_complete({}, event, **deferred.value.kwargs)
    assert again.value.kwargs == {"restarts_done": 1}
    assert first_event(roundtrip(again.value.trigger))["status"] == "success"


def test_restart_budget_spent_fails_with_the_trace(connect):
    task = sensor(max_restarts=1)
    event = {"status": "failed", "message": f"connector {NAME!r}: task(s) 0 FAILED", "trace": TRACE}
    with pytest.raises(ConnectorFailedError, match="after 1 restart"):
        task.execute_complete({}, event, restarts_done=1)


def test_poke_mode_restarts_until_running(connect):
    connect.connectors[NAME].pending_polls = 0
    connect.fail_task(NAME, 0, trace=TRACE, failures_after_restart=1)
    sensor(deferrable=False, max_restarts=2).execute({})
    assert connect.calls("POST", f"/connectors/{NAME}/restart") == 2
    assert connect.connectors[NAME].tasks[0]["state"] == "RUNNING"


def test_poke_mode_gives_up_when_the_task_keeps_failing(connect):
    connect.connectors[NAME].pending_polls = 0
    connect.fail_task(NAME, 0, trace=TRACE, failures_after_restart=5)
    with pytest.raises(ConnectorFailedError, match="after 2 restart"):
        sensor(deferrable=False, max_restarts=2).execute({})
    assert connect.calls("POST", f"/connectors/{NAME}/restart") == 2


def test_trigger_turns_errors_into_an_error_event(connect):
    trigger = ConnectorRunningTrigger(
        connector_name="missing", kafka_connect_conn_id="kafka_connect_test", backoff_seconds=0.01
    )
    event = first_event(trigger)
    assert event["status"] == "error"
    assert "No status found for connector missing" in event["message"]


def test_trigger_times_out_with_an_error_event(connect):
    connect.connectors[NAME].pending_polls = 1000
    trigger = ConnectorRunningTrigger(
        connector_name=NAME, kafka_connect_conn_id="kafka_connect_test", poll_interval=0.01, timeout=0.1
    )
    event = first_event(trigger)
    assert event["status"] == "error" and "timed out" in event["message"]
