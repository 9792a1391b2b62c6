"""``make airflow``: a real local Airflow 3.3 on the demo's state, and the same launcher for tests.

Runs the four components a deployment runs (api-server, scheduler, dag-processor, triggerer)
with the LocalExecutor sized to the machine, each in its own process group with a pid file
and a log under ``$AIRFLOW_HOME/local/``. With ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor`` it
also runs a Celery worker (``airflow celery worker``) against the broker of
``AIRFLOW__CELERY__BROKER_URL`` (default: the local Redis, database 0); tasks then go through
the broker, as on a cluster of workers. Commands:

- ``run``: start, print the URL and the login, stay in the foreground; Ctrl-C stops everything.
- ``start``: start and return once the API answers (tests; ``stop`` ends it).
- ``stop``: stop the components of this ``AIRFLOW_HOME`` (``make airflow-stop``).
- ``status``: say what runs and where.

By default it serves ``make demo``'s state (``.demo/airflow``, ``.demo/lake``, the demo's
connections), so the demo's runs are in the UI; ``--environment inherit`` takes ``AIRFLOW_HOME``
and everything else from the environment instead. Settings that matter on a real Airflow
(docs/operations.md): the API port and base URL, the execution API URL the workers call, one
JWT secret for every component (generated once into ``AIRFLOW_HOME/local/jwt_secret``, never
committed), and the simple auth manager's generated password.

Environment: ``AIRFLOW_PORT`` (default 8080, or a free port when 8080 is taken),
``AIRFLOW_PARALLELISM`` (default 2 task slots per core), and any ``AIRFLOW__*`` setting, such
as ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` for a PostgreSQL metadata database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = {
    "api-server": ["api-server", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
}
#: Added with the CeleryExecutor. Serving logs is left to the api-server, which reads the
#: workers' files on this machine (port 8793 would clash between deployments).
CELERY_COMPONENTS = {"celery-worker": ["celery", "worker", "--skip-serve-logs"]}
CELERY_EXECUTOR = "CeleryExecutor"
LOCAL_REDIS_BROKER = "redis://127.0.0.1:6379/0"
#: With ``DAGFOUNDRY_MLFLOW_UI_PORT`` and ``DAGFOUNDRY_MLFLOW_BACKEND`` (a tracking store URI) set,
#: an MLflow UI runs beside Airflow, started and stopped with it (the demo's model registry).
MLFLOW_UI = "mlflow-ui"
#: What `stop` looks for, whatever the executor of the environment it is called with.
ALL_COMPONENTS = [*COMPONENTS, *CELERY_COMPONENTS, MLFLOW_UI]
# Every process we start carries this variable (set to the Airflow home). `stop` kills each
# component's process group, then any process still in a component's session or carrying the
# marker (setproctitle can overwrite /proc/PID/environ, hence both), so nothing outlives it.
MARKER = "DAGFOUNDRY_LOCAL_AIRFLOW"
STOP_GRACE_SECONDS = 30.0


class LocalAirflow:
    """The components of one Airflow home: their environment, pid files and logs."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment
        self.home = Path(environment["AIRFLOW_HOME"])
        self.run_dir = self.home / "local"

    @property
    def executor(self) -> str:
        return self.environment.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")

    @property
    def components(self) -> dict[str, list[str]]:
        """Return the processes this deployment runs: name -> ``python`` arguments."""
        airflow = {**COMPONENTS, **(CELERY_COMPONENTS if self.executor == CELERY_EXECUTOR else {})}
        found = {name: ["-m", "airflow", *args] for name, args in airflow.items()}
        if self.mlflow_url:
            found[MLFLOW_UI] = [
                "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", self.environment["DAGFOUNDRY_MLFLOW_UI_PORT"],
                "--backend-store-uri", self.environment["DAGFOUNDRY_MLFLOW_BACKEND"], "--workers", "1",
            ]
        return found

    @property
    def mlflow_url(self) -> str | None:
        """Return the MLflow UI's URL when this deployment runs one."""
        port = self.environment.get("DAGFOUNDRY_MLFLOW_UI_PORT")
        return f"http://127.0.0.1:{port}" if port and self.environment.get("DAGFOUNDRY_MLFLOW_BACKEND") else None

    @property
    def url(self) -> str:
        return self.environment["AIRFLOW__API__BASE_URL"].rstrip("/")

    def start(self, *, timeout: float = 180.0) -> None:
        """Migrate the metadata database, start every component and wait for the API."""
        running = self.running()
        if running:
            raise SystemExit(f"Airflow already runs from {self.home} ({', '.join(running)}); stop it first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=self.environment, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise SystemExit(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
        for name, args in self.components.items():
            log = (self.run_dir / f"{name}.log").open("ab")
            process = subprocess.Popen(
                [sys.executable, *args],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
            )
            self._pid_file(name).write_text(f"{process.pid} {_start_time(process.pid)}\n")
        self.wait_until_healthy(timeout)

    def wait_until_healthy(self, timeout: float) -> None:
        """Wait until the API answers; fail with the log tail of a component that died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name in self.components if name not in self.running()]
            if dead:
                self.stop()
                raise SystemExit(f"{dead[0]} exited during start:\n{self.log_tail(dead[0])}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        self.stop()
        raise SystemExit(f"the API at {self.url} did not answer within {timeout:.0f} s:\n{self.log_tail('api-server')}")

    def running(self) -> list[str]:
        """Return the components whose process group still lives."""
        return [name for name in self.components if self._pid(name) is not None]

    def stop(self) -> None:
        """Stop every component's process group (TERM, then KILL after a grace period) and strays."""
        groups = [pid for name in ALL_COMPONENTS if (pid := self._pid(name))]
        for pid in groups:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in groups):
            time.sleep(0.5)
        for pid in groups:
            _signal_group(pid, signal.SIGKILL)
        for pid in self._strays():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in ALL_COMPONENTS:
            self._pid_file(name).unlink(missing_ok=True)

    def login(self) -> str:
        """Describe how to log in (the simple auth manager writes the password at its first start)."""
        users = self.environment.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        passwords_file = self.home / "simple_auth_manager_passwords.json.generated"
        try:
            passwords = json.loads(passwords_file.read_text())
        except (OSError, ValueError):
            return f"users {users}; passwords in {passwords_file}"
        user = users.split(",")[0].split(":")[0]
        return f"user {user!r}, password {passwords.get(user, '?')!r} (from {passwords_file})"

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join((self.run_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _pid(self, name: str) -> int | None:
        """Return the component's pid if that process still runs (same pid and start time)."""
        try:
            pid, started = self._pid_file(name).read_text().split()
        except (OSError, ValueError):
            return None
        # A pid file can outlive its process and the pid be reused: the start time tells them apart.
        return int(pid) if _start_time(int(pid)) == started else None

    def _strays(self) -> list[int]:
        """Return leftover descendants: in a component's session, or carrying the marker."""
        own = os.getpid()
        sessions = {pid for name in ALL_COMPONENTS if (pid := self._recorded_pid(name))}
        return [
            pid
            for pid in _all_pids()
            if pid != own and (_session_of(pid) in sessions or _environ_of(pid).get(MARKER) == str(self.home))
        ]

    def _recorded_pid(self, name: str) -> int | None:
        try:
            return int(self._pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _stat_fields(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw.rsplit(")", 1)[1].split()  # fields after the command name, from the state on


def _start_time(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def _session_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if len(fields) > 3 else None


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def jwt_secret(home: Path) -> str:
    """Return this home's JWT secret, generating it on first use (never committed, mode 600)."""
    path = home / "local" / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def airflow_environment(base: dict[str, str], *, port: int | None = None) -> dict[str, str]:
    """Return the environment of every component: the base settings plus the deployment ones.

    :param base: the environment to extend; must hold ``AIRFLOW_HOME``
    :param port: API port; default ``AIRFLOW_PORT``, else 8080 if free, else any free port
    """
    home = Path(base["AIRFLOW_HOME"]).resolve()
    if port is None:
        port = int(base["AIRFLOW_PORT"]) if base.get("AIRFLOW_PORT") else (8080 if _port_free(8080) else free_port())
    url = f"http://127.0.0.1:{port}"
    parallelism = base.get("AIRFLOW_PARALLELISM") or str(2 * (os.cpu_count() or 1))
    venv_bin = str(Path(sys.executable).parent)
    environment = {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": parallelism,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connection forms' Test button
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "GX_ANALYTICS_ENABLED": "false",
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret(home),
        MARKER: str(home),
    }
    if environment["AIRFLOW__CORE__EXECUTOR"] == CELERY_EXECUTOR:
        # The result backend defaults to the metadata database; the worker runs as many tasks as slots.
        environment.setdefault("AIRFLOW__CELERY__BROKER_URL", LOCAL_REDIS_BROKER)
        environment.setdefault("AIRFLOW__CELERY__WORKER_CONCURRENCY", parallelism)
    if venv_bin not in environment.get("PATH", "").split(os.pathsep):
        environment["PATH"] = venv_bin + os.pathsep + environment.get("PATH", "")
    return environment


def base_environment(source: str) -> dict[str, str]:
    """Return the settings to start from: the demo's (Airflow home, lake, connections) or the caller's.

    :param source: ``demo`` (``make airflow``) or ``inherit`` (``AIRFLOW_HOME`` and the rest come
        from the environment, as in tests)
    """
    if source == "inherit":
        if "AIRFLOW_HOME" not in os.environ:
            raise SystemExit("--environment inherit needs AIRFLOW_HOME in the environment")
        return dict(os.environ)
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
    from include.demo.demo_home import demo_environment
    from include.demo.run_demo import CHAIN_SPECS, scheduler_environment

    # `make demo` leaves its spec folder and a PostgreSQL metadata database; `make demo-inprocess`
    # a SQLite one in the same home.
    return {**os.environ, **(scheduler_environment() if CHAIN_SPECS.exists() else demo_environment())}


def run_foreground(local: LocalAirflow) -> int:
    """Start, report, and stay until Ctrl-C, ``stop`` or a component's death; then stop all."""
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    fresh = not (local.home / "local" / "demo_finished").exists()
    local.start()
    print(announce(local), flush=True)
    if fresh and local.environment.get(MARKER) == str(ROOT / ".demo" / "airflow"):
        print("  (no runs yet: `make airflow-stop`, then `make demo`, then `make airflow` again)", flush=True)
    status = 0
    while not stopping:
        running = local.running()
        if len(running) < len(local.components):
            dead = sorted(set(local.components) - set(running))
            print(f"{', '.join(dead)} stopped; its log:\n{local.log_tail(dead[0])}", file=sys.stderr)
            status = 1
            break
        time.sleep(1)
    print("stopping Airflow ...", flush=True)
    local.stop()
    print("stopped", flush=True)
    return status


def announce(local: LocalAirflow) -> str:
    slots = local.environment["AIRFLOW__CORE__PARALLELISM"]
    executor = f"{local.executor} with {slots} task slots"
    if local.executor == CELERY_EXECUTOR:
        executor += f", one Celery worker on {_without_password(local.environment['AIRFLOW__CELERY__BROKER_URL'])}"
    lines = [
        f"Airflow is up: {local.url}",
        f"  log in: {local.login()}",
        f"  home {local.home}; logs and pids in {local.run_dir}",
        f"  {executor}; DAGs from {ROOT / 'dags'}",
    ]
    if local.mlflow_url:
        lines.append(f"MLflow UI: {local.mlflow_url} (store {local.environment['DAGFOUNDRY_MLFLOW_BACKEND']})")
    lines.append("  stop: Ctrl-C here, or `make airflow-stop` from another shell")
    return "\n".join(lines)


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***' + at if credentials else ''}{host}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "start", "stop", "status"])
    parser.add_argument(
        "--environment", choices=["demo", "inherit"], default="demo",
        help="serve make demo's state (default) or take AIRFLOW_HOME and the rest from the environment",
    )
    args = parser.parse_args(argv)
    base = base_environment(args.environment)
    if args.command in ("stop", "status"):
        # Port and secret do not matter for these: the pid files and marker identify the processes.
        local = LocalAirflow(airflow_environment(base, port=0))
        if args.command == "stop":
            local.stop()
            print(f"stopped Airflow of {local.home}")
        else:
            running = local.running()
            print(f"{', '.join(running) or 'nothing'} running from {local.home}")
        return 0
    local = LocalAirflow(airflow_environment(base))
    if args.command == "start":
        local.start()
        print(announce(local).replace("Ctrl-C here, or ", ""), flush=True)
        return 0
    return run_foreground(local)


if __name__ == "__main__":
    sys.exit(main())
