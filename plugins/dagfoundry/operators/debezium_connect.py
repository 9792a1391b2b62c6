"""Operators that deploy and operate Debezium connectors on a Kafka Connect cluster.

They are thin: the REST calls and the retry policy live in :class:`DebeziumConnectHook`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook, BaseOperator

from dagfoundry.hooks.debezium_connect import (
    RETRYABLE_STATUSES,
    ConnectorConfigInvalidError,
    DebeziumConnectHook,
    DebeziumConnectHookMixin,
    KafkaConnectError,
    assess_status,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from dagfoundry.cdc.connector_config import CaptureConfig

_Execute = TypeVar("_Execute", bound=Callable[..., Any])


def fails_at_once_on_client_errors(execute: _Execute) -> _Execute:
    """Turn the Kafka Connect answers a retry cannot change into ``AirflowFailException``.

    A rejected config, an unknown connector (404) or a bad request (400) stays so on the next
    try: failing at once spares the minutes of task retries. Server errors, a rebalance (409)
    and no answer at all keep the task's retries.
    """

    @functools.wraps(execute)
    def run(self: Any, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return execute(self, context)
        except ConnectorConfigInvalidError as exc:
            raise AirflowFailException(str(exc)) from exc
        except KafkaConnectError as exc:
            status = exc.status_code
            if status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES:
                raise AirflowFailException(str(exc)) from exc
            raise

    return run  # type: ignore[return-value]

# Debezium's JDBC-style options, filled from the source database's Airflow connection.
# The password is always taken from the connection; the others only when the config lacks them.
_SOURCE_OPTIONS = {
    "database.hostname": "host",
    "database.port": "port",
    "database.user": "login",
    "database.dbname": "schema",
}
_SECRET_KEY_MARKERS = ("password", "secret", "token", "key.password")


class _ConnectorOperator(DebeziumConnectHookMixin, BaseOperator):
    """Shared constructor and hook of the operators acting on one connector."""

    template_fields: tuple[str, ...] = ("connector_name",)
    ui_color = "#c5e8f7"

    def __init__(
        self,
        *,
        connector_name: str,
        kafka_connect_conn_id: str = DebeziumConnectHook.default_conn_name,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds


class DebeziumConnectorDeployOperator(_ConnectorOperator):
    """Validate a connector config with its plugin, then create or update the connector.

    Credentials never travel through templates, XCom or the DAG: when ``source_conn_id`` is
    set, ``database.password`` (and ``database.hostname``/``port``/``user``/``dbname`` when the
    config lacks them) are read from that Airflow connection inside ``execute`` and masked in
    logs. A Kafka Connect config-provider reference (``${file:/secrets.properties:pw}``) in
    ``config`` works as well and keeps the password out of the Connect config topic.

    :param connector_name: connector name (templated)
    :param config: flat Debezium connector config including ``connector.class`` (templated)
    :param source_conn_id: Airflow connection of the source PostgreSQL, or None
    :param validate_first: call ``PUT /connector-plugins/{class}/config/validate`` first
    :param capture_config: the CDC capture this connector runs; when given, its tables are
        decided and its publication managed before the deploy as in embedded mode
        (:mod:`dagfoundry.cdc.connect_tables`): a table without a replica identity stays out
        of the publication and ``table.include.list``, and a table joining later is signalled
        for an incremental snapshot
    :return: (XCom) ``{"connector": name, "created": bool}``, plus with ``capture_config``
        ``captured``, ``skipped_tables``, ``snapshot_requested``, ``publication`` and ``signal_ids``
    """

    template_fields = ("connector_name", "config")
    template_fields_renderers = {"config": "json"}

    def __init__(
        self,
        *,
        config: dict[str, Any],
        source_conn_id: str | None = None,
        validate_first: bool = True,
        capture_config: CaptureConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.source_conn_id = source_conn_id
        self.validate_first = validate_first
        self.capture_config = capture_config

    @fails_at_once_on_client_errors
    def execute(self, context: Context) -> dict[str, Any]:
        """Validate and upsert the connector; return whether it was created."""
        config = self.complete_config()
        decided = None
        if self.capture_config is not None:
            config, *decided = self._decide_tables(config)
        self.log.info("Deploying connector %r: %s", self.connector_name, redact(config))
        if self.validate_first:
            self.hook.validate_config(self.connector_name, config)
        created = self.hook.upsert_connector(self.connector_name, config)
        result: dict[str, Any] = {"connector": self.connector_name, "created": created}
        if decided and self.capture_config is not None:
            from dagfoundry.cdc.connect_tables import request_snapshots

            tables, connection = decided
            # After the update, so the connector that reads the signal includes the tables.
            result.update(tables.summary(), signal_ids=request_snapshots(self.capture_config, connection, tables))
            for problem in sorted(tables.skipped.values()):
                self.log.error("%s", problem)
        return result

    def _decide_tables(self, config: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
        """Apply the replica-identity gate and sync the publication; return the restricted config."""
        from airflow.sdk.exceptions import AirflowFailException

        from dagfoundry.cdc.connect_tables import ConnectTablesError, prepare_connect_tables, restricted_properties
        from dagfoundry.cdc.connector_config import SourceConnection

        capture = self.capture_config
        assert capture is not None
        connection = SourceConnection.from_airflow(self.source_conn_id or capture.conn_id, capture.database)
        try:
            tables = prepare_connect_tables(capture, connection, self.hook.get_config(self.connector_name))
        except ConnectTablesError as exc:  # ownership, no capturable table, no signal table: a retry changes nothing
            raise AirflowFailException(str(exc)) from exc
        return restricted_properties(config, capture, tables), tables, connection

    def complete_config(self) -> dict[str, Any]:
        """Return the config with the source credentials filled in from ``source_conn_id``."""
        if not isinstance(self.config, dict):
            raise KafkaConnectError(
                self.connector_name, f"config must be a mapping, got {type(self.config).__name__}"
            )
        config = dict(self.config)
        if not self.source_conn_id:
            return config
        from airflow.sdk.log import mask_secret

        source = BaseHook.get_connection(self.source_conn_id)
        for key, attribute in _SOURCE_OPTIONS.items():
            value = getattr(source, attribute)
            if value not in (None, "") and key not in config:
                config[key] = value
        if source.password:
            mask_secret(source.password)
            config["database.password"] = source.password
        return config


class DebeziumConnectorRestartOperator(_ConnectorOperator):
    """Restart the connector's FAILED instances (default) or the connector and all its tasks.

    :param connector_name: connector name (templated)
    :param only_failed: restart only FAILED instances; False restarts everything
    :return: (XCom) the connector status the worker returned with the restart
    """

    def __init__(self, *, only_failed: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.only_failed = only_failed

    @fails_at_once_on_client_errors
    def execute(self, context: Context) -> dict[str, Any]:
        """Send the restart and report what the worker says."""
        if self.only_failed:
            status = self.hook.restart_failed(self.connector_name)
        else:
            status = self.hook.restart(self.connector_name)
        self.log.info("Restart requested: %s", assess_status(status or {}).message)
        return status


class DebeziumConnectorResetOffsetsOperator(_ConnectorOperator):
    """Stop the connector, wait for STOPPED, reset (DELETE) or alter (PATCH) offsets, resume.

    Deleting the offsets of a Debezium PostgreSQL connector makes it snapshot again on resume
    (``snapshot.mode=initial``); the downstream MERGE is idempotent, so that is safe.

    :param connector_name: connector name (templated)
    :param offsets: ``[{"partition": {...}, "offset": {...} | None}]`` to PATCH, or None to
        DELETE every offset (templated)
    :param resume: resume the connector afterwards
    :param stop_timeout: seconds to wait for STOPPED
    :param poll_interval: seconds between status reads while waiting
    :return: (XCom) the worker's message
    """

    template_fields = ("connector_name", "offsets")

    def __init__(
        self,
        *,
        offsets: list[dict[str, Any]] | None = None,
        resume: bool = True,
        stop_timeout: float = 120.0,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.offsets = offsets
        self.resume = resume
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval

    @fails_at_once_on_client_errors
    def execute(self, context: Context) -> str:
        """Run stop -> wait -> reset/alter -> resume."""
        return self.hook.reset_offsets(
            self.connector_name,
            offsets=self.offsets or None,
            resume=self.resume,
            timeout=self.stop_timeout,
            poll_interval=self.poll_interval,
        )


class DebeziumConnectorStateOperator(_ConnectorOperator):
    """Pause, resume or stop a connector (each call is idempotent on Kafka Connect).

    :param connector_name: connector name (templated)
    :param action: ``pause``, ``resume`` or ``stop`` (templated)
    """

    template_fields = ("connector_name", "action")
    ACTIONS = ("pause", "resume", "stop")

    def __init__(self, *, action: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action = action

    @fails_at_once_on_client_errors
    def execute(self, context: Context) -> None:
        """Send the state change."""
        if self.action not in self.ACTIONS:
            raise KafkaConnectError(
                self.connector_name, f"action {self.action!r} is not one of {', '.join(self.ACTIONS)}"
            )
        getattr(self.hook, self.action)(self.connector_name)
        self.log.info("Connector %r: %s requested", self.connector_name, self.action)


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a connector config with secret-looking values replaced, for logs."""
    return {
        key: "***" if any(marker in key.lower() for marker in _SECRET_KEY_MARKERS) else value
        for key, value in config.items()
    }


class DebeziumResnapshotOperator(_ConnectorOperator):
    """Ask a running connector to re-snapshot tables, through the source's signal table.

    Checks that the connector exists on Kafka Connect, then inserts an ``execute-snapshot``
    (incremental) row with :func:`dagfoundry.cdc.signals.request_incremental_snapshot`. The
    signal id is derived from the task instance, so a retry inserts nothing twice.

    :param connector_name: connector name (templated)
    :param source_conn_id: Airflow connection of the source PostgreSQL
    :param signal_table: ``schema.table`` of the connector's ``signal.data.collection``
    :param tables: ``schema.table`` ids to re-snapshot (templated); None takes the run's
        ``tables`` Param, and an empty list means every table of ``captured_tables``
    :param captured_tables: when given, every table must be among them
    :param database: overrides the connection's database
    :return: (XCom) ``{"connector", "signal_id", "tables"}``
    """

    template_fields = ("connector_name", "tables")

    def __init__(
        self,
        *,
        source_conn_id: str,
        signal_table: str,
        tables: list[str] | str | None = None,
        captured_tables: list[str] | None = None,
        database: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.signal_table = signal_table
        self.tables = tables
        self.captured_tables = captured_tables
        self.database = database

    @fails_at_once_on_client_errors
    def execute(self, context: Context) -> dict[str, Any]:
        """Verify the connector, then insert the signal row."""
        import hashlib

        from airflow.sdk.exceptions import AirflowFailException

        from dagfoundry.cdc.connector_config import SourceConnection
        from dagfoundry.cdc.signals import SignalError, request_incremental_snapshot

        tables = self._tables(context)
        if not tables:
            raise AirflowFailException("re-snapshot: no table given and no captured_tables to default to")
        ti = context.get("ti")
        run = f"{getattr(ti, 'dag_id', '')}/{getattr(ti, 'run_id', '')}/{getattr(ti, 'task_id', '')}/{sorted(tables)}"
        signal_id = "df-" + hashlib.sha256(run.encode()).hexdigest()[:32]  # the column is VARCHAR(42)
        self.log.info("%s", assess_status(self.hook.get_status(self.connector_name)).message)
        try:
            request_incremental_snapshot(
                SourceConnection.from_airflow(self.source_conn_id, self.database),
                self.signal_table,
                tables,
                captured_tables=self.captured_tables,
                signal_id=signal_id,
            )
        except SignalError as exc:  # a table that is not captured: retrying changes nothing
            raise AirflowFailException(str(exc)) from exc
        self.log.info("Re-snapshot of %s requested from connector %r (signal %s)", tables, self.connector_name, signal_id)
        return {"connector": self.connector_name, "signal_id": signal_id, "tables": tables}

    def _tables(self, context: Context) -> list[str]:
        tables: Any = self.tables
        if tables is None:
            tables = (context.get("params") or {}).get("tables")
        if isinstance(tables, str):
            tables = [tables]
        return list(tables or self.captured_tables or [])
