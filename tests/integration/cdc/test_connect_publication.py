"""Connect mode on the real PostgreSQL (Kafka Connect is the REST fake): the deploy keeps a
table without a replica identity out of the publication and the connector, the pickup
summary names it (and the slot's retained WAL), and once the table is fixed the next
deploy adds it and signals a snapshot of its rows.
"""

from __future__ import annotations

import json
import uuid

import pytest

from dagfoundry.cdc.connector_config import (
    CaptureConfig,
    CapturedTable,
    SourceConnection,
    debezium_properties,
    included_tables,
)
from dagfoundry.cdc.embedded_capture import CaptureLimits
from dagfoundry.cdc.tasks import CaptureHealthError, pickup, report_capture_health
from dagfoundry.operators.debezium_connect import DebeziumConnectorDeployOperator
from tests.fakes.kafka_connect import FakeKafkaConnect

pytestmark = pytest.mark.integration

SIGNAL_TABLE = "public.dagfoundry_cdc_signal"


def _publication_tables(sql, name: str) -> set[str]:
    rows = sql("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s", (name,), fetch=True)
    return {r[0] for r in rows}


def test_connect_deploy_keeps_tables_without_replica_identity_out(cdc_database, source_sql, monkeypatch, tmp_path):
    source = f"cg_{uuid.uuid4().hex[:8]}"
    source_sql("CREATE TABLE public.cg_orders (id int PRIMARY KEY, v text);"
               "CREATE TABLE public.cg_nokey (id int NOT NULL, v text);"
               "INSERT INTO cg_orders SELECT g, 'o' FROM generate_series(1, 5) g;"
               "INSERT INTO cg_nokey SELECT g, 'n' FROM generate_series(1, 5) g")
    monkeypatch.setenv("AIRFLOW_CONN_CONNECT_GATE_SOURCE", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": cdc_database}))
    config = CaptureConfig(source=source, conn_id="connect_gate_source", signal_table=SIGNAL_TABLE,
                           tables=(CapturedTable("public", "cg_orders", ("id",)), CapturedTable("public", "cg_nokey", ("id",))))
    placeholder = SourceConnection(host="", port=5432, dbname="", user="")
    properties = {k: v for k, v in debezium_properties(config, placeholder, mode="connect").items() if not k.startswith("database.")}
    sink = tmp_path / "sink"
    sink.mkdir()
    try:
        with FakeKafkaConnect() as fake:
            monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_GATE", json.dumps({"conn_type": "http", "host": fake.url}))
            deploy = DebeziumConnectorDeployOperator(
                task_id="deploy_connector", connector_name=config.engine_name, config=properties,
                source_conn_id=config.conn_id, kafka_connect_conn_id="kafka_connect_gate", capture_config=config,
            )
            first = deploy.execute({})
            assert set(first["skipped_tables"]) == {"public.cg_nokey"}
            assert "ALTER TABLE public.cg_nokey REPLICA IDENTITY FULL" in first["skipped_tables"]["public.cg_nokey"]
            assert _publication_tables(source_sql, config.publication) == {"public.cg_orders", SIGNAL_TABLE}
            deployed = fake.connectors[config.engine_name].config
            assert included_tables(deployed["table.include.list"]) == {"public.cg_orders"}
            assert deployed["publication.autocreate.mode"] == "disabled"
            source_sql("UPDATE cg_nokey SET v = 'the application still works' WHERE id = 1")

            # The pickup summary names the skipped table and reports the slot like embedded mode.
            source_sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (config.slot,))
            source_sql("UPDATE cg_orders SET v = v || '!'")  # WAL the slot retains
            summary = pickup(config, str(tmp_path / "lake"), str(sink), deployed=first,
                             limits=CaptureLimits(slot_wal_fail_bytes=1))
            assert summary["slot"]["exists"] and summary["slot"]["retained_wal_bytes"] > 1
            assert set(summary["skipped_tables"]) == {"public.cg_nokey"}
            with pytest.raises(CaptureHealthError, match=r"(?s)public.cg_nokey has no replica identity.*retains .* of WAL"):
                report_capture_health(summary)

            # Fixed: the next deploy adds it to the publication and the connector, and signals its snapshot.
            source_sql("ALTER TABLE cg_nokey REPLICA IDENTITY FULL")
            second = deploy.execute({})
            assert second["skipped_tables"] == {} and second["snapshot_requested"] == ["public.cg_nokey"]
            assert _publication_tables(source_sql, config.publication) == {"public.cg_orders", "public.cg_nokey", SIGNAL_TABLE}
            deployed = fake.connectors[config.engine_name].config
            assert included_tables(deployed["table.include.list"]) == {"public.cg_orders", "public.cg_nokey"}
            (signal,) = source_sql(f"SELECT data FROM {SIGNAL_TABLE} WHERE id = %s", (second["signal_ids"][0],), fetch=True)
            assert json.loads(signal[0]) == {"data-collections": ["public.cg_nokey"], "type": "incremental", "surrogate-key": "id"}
            third = deploy.execute({})  # nothing new: no second signal
            assert third["snapshot_requested"] == [] and third["signal_ids"] == []
    finally:
        source_sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (config.slot,))
        source_sql(f'DROP PUBLICATION IF EXISTS "{config.publication}"')


def test_connect_deploy_refuses_when_no_table_can_be_captured(cdc_database, source_sql, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    source_sql("CREATE TABLE IF NOT EXISTS public.cg_only_nokey (id int NOT NULL)")
    monkeypatch.setenv("AIRFLOW_CONN_CONNECT_GATE_SOURCE", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": cdc_database}))
    config = CaptureConfig(source=f"cgn_{uuid.uuid4().hex[:8]}", conn_id="connect_gate_source", signal_table=None,
                           tables=(CapturedTable("public", "cg_only_nokey", ("id",)),))
    properties = debezium_properties(config, SourceConnection(host="", port=5432, dbname="", user=""), mode="connect")
    with FakeKafkaConnect() as fake:
        monkeypatch.setenv("AIRFLOW_CONN_KAFKA_CONNECT_GATE", json.dumps({"conn_type": "http", "host": fake.url}))
        deploy = DebeziumConnectorDeployOperator(
            task_id="deploy_connector", connector_name=config.engine_name, config=properties,
            source_conn_id=config.conn_id, kafka_connect_conn_id="kafka_connect_gate", capture_config=config,
        )
        with pytest.raises(AirflowFailException, match="no table can be captured: table public.cg_only_nokey has no replica identity"):
            deploy.execute({})
        assert config.engine_name not in fake.connectors, "nothing is deployed"
    assert not _publication_tables(source_sql, config.publication)
