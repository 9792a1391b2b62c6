"""Run ``capture_runner.py`` (the embedded Debezium capture) and ``mirror_runner.py`` in child processes.

A module of its own (not conftest.py): several conftest modules exist, and
``from conftest import`` would bind whichever pytest imported last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

RUNNER = Path(__file__).with_name("capture_runner.py")


def start_capture(job: dict, workdir: Path) -> subprocess.Popen:
    """Start ``capture_runner.py`` on ``job`` in a child process."""
    job_path = workdir / f"job-{uuid.uuid4().hex[:6]}.json"
    job_path.write_text(json.dumps(job))
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(job_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
    )


def run_capture(job: dict, workdir: Path, timeout: float = 240) -> tuple[int, dict | None, str]:
    """Run a capture to its end; return (exit code, summary or None, stderr)."""
    process = start_capture(job, workdir)
    out, err = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return process.returncode, (json.loads(lines[-1]) if process.returncode == 0 and lines else None), err


MIRROR_RUNNER = Path(__file__).with_name("mirror_runner.py")


def run_mirror(
    lake_root: Path, source: str, failpoint: str | None = None, timeout: float = 300, engine: str = "duckdb"
) -> tuple[int, str]:
    """Run a mirror update on ``engine`` in a child process, optionally armed to die at ``failpoint``.

    :return: (exit code, stderr); -9 when the child was SIGKILLed by its fail point
    """
    import os

    from dagfoundry.cdc.mirror import FAILPOINT_ENV

    env = {k: v for k, v in os.environ.items() if k != FAILPOINT_ENV}
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    process = subprocess.run(
        [sys.executable, str(MIRROR_RUNNER), str(lake_root), source, engine],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    return process.returncode, process.stderr
