"""Failure notifications configured by a spec's ``alerts`` section."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context


class WebhookFailureNotifier(BaseNotifier):
    """POST a JSON description of a failed task to the endpoint of an Airflow HTTP connection.

    The URL is built from the connection (``schema://host:port`` plus the ``endpoint`` extra);
    a password, when set, is sent as a bearer token. Nothing secret goes into the payload.

    :param conn_id: Airflow connection of type ``http``
    """

    template_fields = ("conn_id",)

    def __init__(self, *, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: Context) -> None:
        """Send the notification; a failing endpoint is logged, never raised (the task already failed)."""
        import requests
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(self.conn_id)
        extra = connection.extra_dejson
        scheme = connection.schema or "https"
        port = f":{connection.port}" if connection.port else ""
        url = f"{scheme}://{connection.host}{port}/{str(extra.get('endpoint', '')).lstrip('/')}"
        headers = {"Content-Type": "application/json", **extra.get("headers", {})}
        if connection.password:
            headers["Authorization"] = f"Bearer {connection.password}"
        try:
            requests.post(url, json=failure_payload(context), headers=headers, timeout=10).raise_for_status()
        except requests.RequestException as exc:
            self.log.warning("Failure webhook %s could not be reached: %s", self.conn_id, exc)


def failure_payload(context: Any) -> dict[str, Any]:
    """Describe a failed task instance in JSON-safe fields."""
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error": str(exception) if exception else None,
    }
