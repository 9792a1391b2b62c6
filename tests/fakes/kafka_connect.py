"""FAKE of the Kafka Connect REST API, for tests only.

A real Kafka Connect worker cannot run on this machine (see DESIGN.md), so this stdlib HTTP
server answers the calls the dagfoundry hook makes the way Kafka Connect's REST API documents
them (``ConnectorsResource`` / ``ConnectorPluginsResource`` of Apache Kafka 3.7+):

- ``PUT /connectors/{name}/config``: 201 when created, 200 when updated, 400 on a name mismatch
- ``GET /connectors/{name}/status``: ``{"name", "connector": {"state", "worker_id"[, "trace"]},
  "tasks": [{"id", "state", "worker_id"[, "trace"]}], "type"}``; 404 for an unknown connector
- ``POST /connectors/{name}/restart``: 204 without query; 202 + status with ``includeTasks``/``onlyFailed``
- ``PUT .../pause`` and ``.../resume``: 202; ``PUT .../stop``: 204; ``DELETE /connectors/{name}``: 204
- ``GET|PATCH|DELETE .../offsets``: PATCH/DELETE answer 400 unless the connector is STOPPED
- ``PUT /connector-plugins/{plugin}/config/validate``: 200 with ``error_count`` and ``configs``
- every error body is ``{"error_code": <int>, "message": "..."}``

The fake also models the one thing of the Debezium source connector the tests need: a
connector that starts without stored offsets (created, or resumed after ``DELETE .../offsets``)
takes a snapshot (``FakeConnector.snapshots`` counts them) and stores a fresh offset.

Faults are scriptable: a status N times (409 during a rebalance, 500 "Request timed out"), slow
answers (client timeouts), failing tasks with traces that fail again after restarts, and
connectors that stay UNASSIGNED for a few status reads after a change.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REQUIRED_KEYS = ("connector.class", "topic.prefix", "database.hostname")
WORKER = "127.0.0.1:8083"


@dataclass
class Fault:
    """Answer ``status`` (or only wait ``delay`` seconds when status is None) ``times`` times."""

    method: str
    path: str
    status: int | None
    message: str = ""
    delay: float = 0.0
    times: int = 1


@dataclass
class FakeConnector:
    """State of one connector as a worker would report it."""

    name: str
    config: dict[str, str]
    state: str = "RUNNING"
    tasks: list[dict[str, Any]] = field(default_factory=list)
    connector_trace: str = ""
    pending_polls: int = 0
    failures_after_restart: int = 0
    failure_trace: str = ""
    offsets: list[dict[str, Any]] = field(default_factory=list)
    snapshots: int = 0

    def start_source(self) -> None:
        """Start as a Debezium source does: without offsets it snapshots, then stores an offset."""
        if not self.offsets:
            self.snapshots += 1
            server = self.config.get("topic.prefix", self.name)
            self.offsets = [{"partition": {"server": server}, "offset": {"lsn": 1000 * (self.snapshots + 1), "snapshot": "last"}}]

    def set_running(self) -> None:
        count = int(self.config.get("tasks.max", "1"))
        self.state = "RUNNING"
        self.tasks = [{"id": i, "state": "RUNNING", "worker_id": WORKER} for i in range(count)]

    def status(self) -> dict[str, Any]:
        connector: dict[str, Any] = {"state": self.state, "worker_id": WORKER}
        if self.connector_trace:
            connector["trace"] = self.connector_trace
        tasks = self.tasks
        if self.pending_polls > 0:
            self.pending_polls -= 1
            connector = {"state": "UNASSIGNED", "worker_id": WORKER}
            tasks = []
        return {"name": self.name, "connector": connector, "tasks": [dict(t) for t in tasks], "type": "source"}


class FakeKafkaConnect:
    """A FAKE Kafka Connect REST API on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self, *, pending_polls_after_change: int = 0) -> None:
        self.connectors: dict[str, FakeConnector] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.pending_polls_after_change = pending_polls_after_change
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # a short poll interval keeps shutdown (and so every test using the fake) fast
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKafkaConnect:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_fault(self, method: str, path: str, status: int | None, *, message: str = "", delay: float = 0.0, times: int = 1) -> None:
        """Script ``times`` abnormal answers for ``method path`` (path without query)."""
        self.faults.append(Fault(method, path, status, message or f"scripted {status}", delay, times))

    def fail_task(self, name: str, task_id: int = 0, *, trace: str, failures_after_restart: int = 0) -> None:
        """Mark a task FAILED with ``trace``; it fails again after the next N restarts."""
        connector = self.connectors[name]
        connector.tasks[task_id].update(state="FAILED", trace=trace)
        connector.failures_after_restart = failures_after_restart
        connector.failure_trace = trace

    def calls(self, method: str, path: str) -> int:
        """Count the requests received for ``method path``."""
        return sum(1 for m, p in self.requests if (m, p) == (method, path))

    # -- request handling (called from the server thread, under self.lock) --

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.path == path and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        if not parts:
            return 200, {"version": "4.1.0-fake", "commit": "fake", "kafka_cluster_id": "fake-cluster"}
        if parts[0] == "connector-plugins" and len(parts) == 4 and parts[2:] == ["config", "validate"] and method == "PUT":
            return self.validate(parts[1], body)
        if parts[0] != "connectors":
            return _error(404, "HTTP 404 Not Found")
        if len(parts) == 1 and method == "GET":
            return 200, sorted(self.connectors)
        name, rest = parts[1], parts[2:]
        if rest == ["config"] and method == "PUT":
            return self.put_config(name, body)
        connector = self.connectors.get(name)
        if connector is None:
            if rest == ["status"]:
                return _error(404, f"No status found for connector {name}")
            return _error(404, f"Connector {name} not found")
        return self.on_connector(connector, method, rest, query, body)

    def validate(self, plugin: str, config: dict[str, str]) -> tuple[int, Any]:
        connector_class = config.get("connector.class", "")
        if not connector_class:
            return _error(400, "Connector config {} contains no connector type")
        if not connector_class.endswith(plugin):
            return _error(400, f"Included connector type {connector_class} does not match request type {plugin}")
        configs = []
        for key in sorted(set(config) | set(REQUIRED_KEYS)):
            errors = [] if config.get(key) else [f"The '{key}' value is invalid: A value is required"]
            configs.append({"definition": {"name": key, "required": key in REQUIRED_KEYS},
                            "value": {"name": key, "value": config.get(key), "recommended_values": [],
                                      "errors": errors, "visible": True}})
        error_count = sum(len(c["value"]["errors"]) for c in configs)
        return 200, {"name": connector_class, "error_count": error_count, "groups": ["Common"], "configs": configs}

    def put_config(self, name: str, config: dict[str, str]) -> tuple[int, Any]:
        if config.get("name", name) != name:
            return _error(400, f"Connector name configuration ({config['name']}) doesn't match connector name in the URL ({name})")
        config = {**config, "name": name}
        created = name not in self.connectors
        if created:
            self.connectors[name] = FakeConnector(name, config)
        connector = self.connectors[name]
        connector.config = config
        if connector.state == "STOPPED":  # a config update keeps the target state
            return 200, {"name": name, "config": config, "tasks": [], "type": "source"}
        connector.set_running()
        connector.start_source()
        connector.pending_polls = self.pending_polls_after_change
        info = {"name": name, "config": config, "tasks": [{"connector": name, "task": t["id"]} for t in connector.tasks], "type": "source"}
        return (201 if created else 200), info

    def on_connector(self, c: FakeConnector, method: str, rest: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        route = (method, "/".join(rest))
        if route == ("GET", ""):
            return 200, {"name": c.name, "config": c.config, "tasks": [], "type": "source"}
        if route == ("DELETE", ""):
            del self.connectors[c.name]
            return 204, None
        if route == ("GET", "config"):
            return 200, c.config
        if route == ("GET", "status"):
            return 200, c.status()
        if route == ("POST", "restart"):
            return self.restart(c, query)
        if route == ("PUT", "pause"):
            if c.state != "STOPPED":
                c.state = "PAUSED"
                for task in c.tasks:
                    if task["state"] == "RUNNING":
                        task["state"] = "PAUSED"
            return 202, None
        if route == ("PUT", "resume"):
            if c.state in ("PAUSED", "STOPPED"):
                if c.state == "STOPPED":
                    c.start_source()
                c.set_running()
                c.pending_polls = self.pending_polls_after_change
            return 202, None
        if route == ("PUT", "stop"):
            c.state, c.tasks = "STOPPED", []
            return 204, None
        if rest == ["offsets"]:
            return self.offsets(c, method, body)
        return _error(404, "HTTP 404 Not Found")

    def restart(self, c: FakeConnector, query: dict[str, str]) -> tuple[int, Any]:
        include_tasks = query.get("includeTasks") == "true"
        only_failed = query.get("onlyFailed") == "true"
        if not include_tasks and not only_failed:
            c.connector_trace = ""
            return 204, None
        for task in c.tasks:
            if include_tasks and (task["state"] == "FAILED" or not only_failed):
                if c.failures_after_restart > 0 and task["state"] == "FAILED":
                    c.failures_after_restart -= 1
                    task.update(state="FAILED", trace=c.failure_trace)
                else:
                    task.pop("trace", None)
                    task["state"] = "RUNNING"
        answer = c.status()
        return 202, answer

    def offsets(self, c: FakeConnector, method: str, body: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, {"offsets": c.offsets}
        if c.state != "STOPPED":
            return _error(400, "Connectors must be in the STOPPED state before their offsets can be modified. "
                               f"This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{c.name}/stop' endpoint")
        if method == "DELETE":
            c.offsets = []
            return 200, {"message": "The offsets for this connector have been reset successfully"}
        if method == "PATCH":
            offsets = (body or {}).get("offsets")
            if not offsets:
                return _error(400, "Partitions / offsets need to be provided for an alter offsets request")
            by_partition = {json.dumps(o["partition"], sort_keys=True): o for o in c.offsets}
            for entry in offsets:
                key = json.dumps(entry["partition"], sort_keys=True)
                if entry.get("offset") is None:
                    by_partition.pop(key, None)
                else:
                    by_partition[key] = entry
            c.offsets = list(by_partition.values())
            return 200, {"message": "The offsets for this connector have been altered successfully"}
        return _error(405, "HTTP 405 Method Not Allowed")


def _error(code: int, message: str) -> tuple[int, Any]:
    return code, {"error_code": code, "message": message}


def _handler_for(fake: FakeKafkaConnect) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            return

        def _serve(self) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with fake.lock:
                fake.requests.append((self.command, split.path))
                fault = fake.take_fault(self.command, split.path)
            if fault and fault.delay:
                time.sleep(fault.delay)
            if fault and fault.status is not None:
                status, payload = _error(fault.status, fault.message)
            else:
                with fake.lock:
                    status, payload = fake.handle(self.command, split.path, query, body)
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

    return Handler
