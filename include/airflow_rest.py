"""A thin client of one Airflow 3.3 deployment's REST API (``/api/v2``), as a user or a CI job drives it.

Shared by ``make demo`` (include/demo/lifecycle.py) and the tests that run a real scheduler.
It assumes the simple auth manager with ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True``
(every caller is an admin, no token), which is how the local deployments here are started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """An API call answered with an error status, or a wait timed out."""


class AirflowApi:
    """Call one Airflow's ``/api/v2`` and wait for what the scheduler does."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url.rstrip("/")
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> dict:
        """Call ``/api/v2<path>`` and return the JSON answer; raise :class:`AirflowApiError` on a status >= 300."""
        response = self.session.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        if response.status_code >= 300:
            raise AirflowApiError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else {}

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 240.0, every: float = 2.0) -> T:
        """Call ``check`` until it returns something truthy; return that, or raise after ``timeout`` seconds."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = check()
            except (requests.ConnectionError, requests.Timeout):
                found = None  # a busy api-server answers late: ask again
            if found:
                return found
            time.sleep(every)
        raise AirflowApiError(f"timed out after {timeout:.0f} s waiting for {what}")

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.call("GET", "/dags", params={"limit": 1000})["dags"]}

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Start a manual run without a logical date; return its run id."""
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def runs(self, dag_id: str, **filters: Any) -> list[dict]:
        """Return the DAG's runs, oldest first (filters as the API takes them, e.g. ``run_type``)."""
        params = {"limit": 100, "order_by": "run_after", **filters}
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_runs(self, dag_id: str, run_ids: list[str], timeout: float = 240.0) -> dict[str, str]:
        """Wait until every run ends (success or failed); return run id -> state."""

        def finished() -> dict[str, str] | None:
            states = {r["dag_run_id"]: r["state"] for r in self.runs(dag_id) if r["dag_run_id"] in run_ids}
            done = len(states) == len(run_ids) and all(s in FINISHED for s in states.values())
            return states if done else None

        return self.wait_for(f"runs {run_ids} of {dag_id}", finished, timeout)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Return each task instance's state (mapped ones as ``task_id[index]``)."""
        found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return {
            t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t["state"]
            for t in found["task_instances"]
        }

    def failure_report(self, dag_id: str, run_id: str, log_lines: int = 40) -> str:
        """Describe a run's task states, then the last log lines of each failed task (for error messages)."""
        found = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        instances = found["task_instances"]
        states = {
            t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t["state"] for t in instances
        }
        parts = [json.dumps(states)]
        for t in instances:
            if t["state"] != "failed":
                continue
            parts.append(f"--- log of {t['task_id']} (try {t.get('try_number')}):\n{self.log_tail(dag_id, run_id, t, log_lines)}")
        return "\n".join(parts)

    def log_tail(self, dag_id: str, run_id: str, instance: dict, lines: int = 40) -> str:
        """Return the last ``lines`` lines of a task instance's log (its latest try), or why not."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{instance['task_id']}/logs/{max(instance.get('try_number') or 1, 1)}"
        try:
            content = self.call(
                "GET", path, params={"full_content": True, "map_index": instance.get("map_index", -1)},
                headers={"Accept": "application/json"},
            ).get("content")
        except AirflowApiError as error:
            return f"(no log: {error})"
        if isinstance(content, list):
            rendered = [_log_line(e) for e in content]
        else:
            rendered = str(content).splitlines()
        return "\n".join(rendered[-lines:])

    def xcom(self, dag_id: str, run_id: str, task_id: str, *, key: str = "return_value", map_index: int = -1) -> Any:
        """Return a task's XCom value, decoded (None when the task pushed nothing)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        try:
            value = self.call("GET", path, params={"map_index": map_index, "deserialize": True})["value"]
        except AirflowApiError as error:
            if ": 404 " in str(error):
                return None
            raise
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict]:
        """Return the Asset events a run consumed (empty for a run no Asset started).

        Each as the API answers it: ``name``, ``uri``, ``extra``, ``source_dag_id``,
        ``source_run_id`` (the run that emitted it) and ``created_dagruns`` (each with
        ``triggering``: whether this event is the one that started that run).
        """
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")["asset_events"]

    def emitted_asset_events(self, dag_id: str, run_id: str) -> list[dict]:
        """Return the Asset events a run emitted (``GET /assets/events`` by source DAG and run)."""
        params = {"source_dag_id": dag_id, "source_run_id": run_id, "limit": 100}
        return self.call("GET", "/assets/events", params=params)["asset_events"]

    def triggering_assets(self, dag_id: str, run_id: str) -> list[str]:
        """Return the names of the Assets whose events started a run (empty for other runs)."""
        return sorted({e.get("name") or e.get("uri") for e in self.upstream_asset_events(dag_id, run_id)})


def _log_line(entry: Any) -> str:
    """Render one structured log entry (its exception, when it carries one, on the same line)."""
    if not isinstance(entry, dict):
        return str(entry)
    line = " ".join(str(entry[k]) for k in ("timestamp", "level", "event") if entry.get(k))
    for detail in entry.get("error_detail") or []:
        if isinstance(detail, dict):
            line += f" | {detail.get('exc_type')}: {detail.get('exc_value')}"
    return line

