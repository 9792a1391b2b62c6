"""Wait until a Debezium connector on Kafka Connect is RUNNING, healing failed tasks if asked."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf

from dagfoundry.hooks.debezium_connect import (
    ConnectorFailedError,
    DebeziumConnectHook,
    DebeziumConnectHookMixin,
    KafkaConnectError,
    assess_status,
)
from dagfoundry.triggers.debezium_connect import ConnectorRunningTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

# A stack trace can be long; the task log gets all of it, the exception message the head.
_TRACE_IN_MESSAGE = 4000


class ConnectorRunningSensor(DebeziumConnectHookMixin, BaseSensorOperator):
    """Succeed when the connector and every task are RUNNING; fail fast on FAILED with the trace.

    With ``deferrable=True`` it checks once, then waits in the triggerer
    (:class:`ConnectorRunningTrigger`) and resumes in :meth:`execute_complete`. When something is
    FAILED it first restarts the failed instances (``POST /restart?includeTasks=true&onlyFailed=true``)
    up to ``max_restarts`` times, then fails with the worker's stack trace.

    :param connector_name: connector to watch (templated)
    :param kafka_connect_conn_id: Airflow HTTP connection of the Kafka Connect cluster
    :param max_restarts: restarts of failed tasks before failing; 0 fails at the first FAILED
    :param deferrable: wait in the triggerer instead of occupying a worker slot
    :param max_retries: retries of one REST call on 409/5xx/connection errors
    :param backoff_seconds: first backoff of those retries
    """

    template_fields = ("connector_name",)
    ui_color = "#c5e8f7"

    def __init__(
        self,
        *,
        connector_name: str,
        kafka_connect_conn_id: str = DebeziumConnectHook.default_conn_name,
        max_restarts: int = 0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.max_restarts = max_restarts
        self.deferrable = deferrable
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.restarts_done = 0

    def poke(self, context: Context) -> bool:
        """Check the status once; restart or raise on FAILED."""
        health = assess_status(self.hook.get_status(self.connector_name))
        if health.state == "failed":
            self._heal_or_fail(health.message, health.trace)
            return False
        self.log.info("%s", health.message)
        return health.state == "running"

    def execute(self, context: Context) -> None:
        """Poke once; when not yet RUNNING and deferrable, hand the wait to the triggerer."""
        if not self.deferrable:
            super().execute(context)
            return
        if not self.poke(context):
            self._defer()

    def execute_complete(self, context: Context, event: dict[str, Any], restarts_done: int = 0) -> None:
        """Resume after the trigger fired: succeed, heal and wait again, or fail."""
        self.restarts_done = restarts_done
        status = event.get("status")
        if status == "success":
            self.log.info("%s", event.get("message"))
            return
        if status == "failed":
            self._heal_or_fail(event.get("message", ""), event.get("trace", ""))
            self._defer()
        raise KafkaConnectError(self.connector_name, f"status watch failed: {event.get('message')}")

    def _defer(self) -> None:
        self.defer(
            trigger=ConnectorRunningTrigger(
                connector_name=self.connector_name,
                kafka_connect_conn_id=self.kafka_connect_conn_id,
                poll_interval=_seconds(self.poke_interval),
                max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds,
            ),
            method_name="execute_complete",
            kwargs={"restarts_done": self.restarts_done},
            timeout=timedelta(seconds=_seconds(self.timeout)) if self.timeout is not None else None,
        )

    def _heal_or_fail(self, message: str, trace: str) -> None:
        if self.restarts_done >= self.max_restarts:
            self.log.error("%s; worker trace:\n%s", message, trace)
            head = trace[:_TRACE_IN_MESSAGE]
            raise ConnectorFailedError(
                self.connector_name,
                f"{message} after {self.restarts_done} restart(s); worker trace:\n{head}",
                trace,
            )
        self.restarts_done += 1
        self.log.warning(
            "%s; restarting failed instances (%d/%d)", message, self.restarts_done, self.max_restarts
        )
        self.hook.restart_failed(self.connector_name)


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
