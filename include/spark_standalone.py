"""A Spark standalone cluster on this machine, started from the installed pyspark.

pyspark's wheel ships ``bin/spark-class`` and Spark's jars, which hold the standalone
``Master`` and ``Worker``: this module starts one master and its workers on free ports, each
in its own process group with a log under the work directory, and stops them (executors
included, they run in the worker's process group). Tests use it to run the project's Spark
jobs through a ``spark://`` connection; a person can try the cluster path with::

    python include/spark_standalone.py run      # prints the connection, Ctrl-C stops it

The only thing that changes for the jobs is the Airflow connection :meth:`SparkStandalone.connection`
returns: ``{"conn_type": "spark", "host": "spark://127.0.0.1", "port": <master port>}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STOP_GRACE_SECONDS = 10.0


class SparkClusterError(RuntimeError):
    """The standalone cluster did not start; the message carries the failing process's log tail."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_home() -> Path:
    """Return the installed pyspark's directory: its ``bin/`` and ``jars/`` are a Spark home.

    Set explicitly, because ``spark-class`` otherwise looks for it with whichever ``python3``
    comes first on ``PATH``.
    """
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkClusterError(f"pyspark is not installed for {sys.executable}: install requirements.txt")
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").exists():
        raise SparkClusterError(f"{home}/bin/spark-class not found: the pyspark install is incomplete")
    return home


class SparkStandalone:
    """One master and ``workers`` workers bound to 127.0.0.1, with logs under ``work_dir``.

    :param work_dir: logs and the workers' application directories
    :param workers: number of worker processes
    :param cores: cores each worker offers
    :param memory: memory each worker offers to executors (e.g. ``"1g"``; an executor's
        ``spark.executor.memory``, 1g by default, must fit)
    """

    def __init__(self, work_dir: Path, *, workers: int = 1, cores: int = 2, memory: str = "1536m") -> None:
        self.work_dir = Path(work_dir)
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port = _free_port()
        self.ui_port = _free_port()
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def connection(self) -> str:
        """Return the Airflow connection (JSON, for ``AIRFLOW_CONN_*``) that submits to this master."""
        return json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1", "port": self.port})

    def start(self, timeout: float = 90.0) -> None:
        """Start the master, then the workers; return once every worker is registered and alive.

        :raises SparkClusterError: when a process exits or the cluster is not ready in time
        """
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._launch("master", MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.port),
                     "--webui-port", str(self.ui_port))
        try:
            self._wait(lambda state: state.get("status") == "ALIVE", "the master to be ALIVE", timeout)
            for number in range(self.workers):
                work = self.work_dir / f"worker-{number}"
                work.mkdir(exist_ok=True)
                self._launch(f"worker-{number}", WORKER_CLASS, "--host", "127.0.0.1", "--port", "0",
                             "--webui-port", "0", "--cores", str(self.cores), "--memory", self.memory,
                             "--work-dir", str(work), self.master_url)
            self._wait(lambda state: state.get("aliveworkers", 0) >= self.workers,
                       f"{self.workers} worker(s) to register", timeout)
        except BaseException:
            self.stop()
            raise

    def state(self) -> dict:
        """Return the master's JSON view (workers, cores, active and completed applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as answer:
            return json.load(answer)

    def completed_applications(self) -> list[str]:
        """Return the names of the applications that ran to completion on this cluster."""
        return [app["name"] for app in self.state().get("completedapps", [])]

    def stop(self) -> None:
        """Stop workers (and their executors) first, then the master: TERM, then KILL."""
        for name in sorted(self.processes, key=lambda n: n == "master"):
            _signal_group(self.processes[name].pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.work_dir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        home = spark_home()
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            # No REST submission server: it would take port 6066 for every cluster on the machine.
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
            "SPARK_DAEMON_MEMORY": "512m",
        }
        with (self.work_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [str(home / "bin" / "spark-class"), main_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SparkClusterError(
                        f"Spark {name} exited with {process.returncode} while waiting for {what}:\n{self.log_tail(name)}"
                    )
            try:
                if ready(self.state()):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise SparkClusterError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.log_tail('master')}")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--memory", default="1536m")
    args = parser.parse_args(argv)
    cluster = SparkStandalone(Path(tempfile.mkdtemp(prefix="spark-standalone-")), workers=args.workers,
                              cores=args.cores, memory=args.memory)
    cluster.start()
    print(f"Spark master {cluster.master_url} (UI http://127.0.0.1:{cluster.ui_port}); logs in {cluster.work_dir}")
    print(f"  AIRFLOW_CONN_SPARK_LOCAL='{cluster.connection()}' runs the specs' jobs here; Ctrl-C stops it")
    try:
        while all(p.poll() is None for p in cluster.processes.values()):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
