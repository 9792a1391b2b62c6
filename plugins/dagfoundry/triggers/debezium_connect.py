"""Wait in the triggerer until a Kafka Connect connector and all its tasks are RUNNING."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class ConnectorRunningTrigger(BaseTrigger):
    """Poll a connector's status until it is RUNNING everywhere, FAILED somewhere, or time runs out.

    The REST calls go through the synchronous :class:`DebeziumConnectHook` in a worker thread
    (``asyncio.to_thread``), so the triggerer's event loop never blocks and the retry policy is
    the same as in tasks. The connection is read with ``aget_connection``.

    Events: ``{"status": "success" | "failed" | "error", "message": str, "trace": str,
    "connector": str}``; ``failed`` carries the worker's stack trace.

    :param connector_name: connector to watch
    :param kafka_connect_conn_id: Airflow HTTP connection of the Kafka Connect cluster
    :param poll_interval: seconds between status reads
    :param timeout: seconds before giving up with an ``error`` event; None waits forever
        (the task's own deferral timeout still applies)
    :param max_retries: retries of one REST call (409/5xx/connection errors)
    :param backoff_seconds: first backoff of those retries
    """

    def __init__(
        self,
        *,
        connector_name: str,
        kafka_connect_conn_id: str,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.connector_name = connector_name
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and JSON-safe kwargs (a connection id, never credentials)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "connector_name": self.connector_name,
                "kafka_connect_conn_id": self.kafka_connect_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "max_retries": self.max_retries,
                "backoff_seconds": self.backoff_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event: success, failed (with the trace) or error."""
        try:
            event = await self._watch()
        except Exception as exc:  # the task decides what an error means; never crash the triggerer
            event = {"status": "error", "message": f"{type(exc).__name__}: {exc}", "trace": ""}
        yield TriggerEvent({**event, "connector": self.connector_name})

    async def _watch(self) -> dict[str, str]:
        from dagfoundry.hooks.debezium_connect import DebeziumConnectHook, assess_status

        hook = DebeziumConnectHook(
            self.kafka_connect_conn_id, max_retries=self.max_retries, backoff_seconds=self.backoff_seconds
        )
        await hook.aload_settings()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            status = await asyncio.to_thread(hook.get_status, self.connector_name)
            health = assess_status(status)
            if health.state == "running":
                return {"status": "success", "message": health.message, "trace": ""}
            if health.state == "failed":
                return {"status": "failed", "message": health.message, "trace": health.trace}
            if deadline is not None and time.monotonic() >= deadline:
                return {"status": "error", "message": f"timed out after {self.timeout}s: {health.message}", "trace": ""}
            self.log.info("%s; next check in %ss", health.message, self.poll_interval)
            await asyncio.sleep(self.poll_interval)
