"""Run one side of a benchmark in a fresh Python process and measure it.

Peak memory only means something per side when each side has a process of its own: a
process's RSS high-water mark never goes down, so a side measured after another in the
same process would inherit the other's peak. :func:`run_measured` starts
``python -m bench.measured <module:function> <kwargs JSON>``; the child calls the function,
then reports its result (anything JSON can hold), wall seconds, CPU seconds (the child's
and its children's, e.g. a ``spark-submit`` JVM) and peak RSS in MiB (the larger of the
child's own and its largest child's: a JVM is measured, not the Python process that
waited for it). The child's own output is shown only with ``DAGFOUNDRY_BENCH_VERBOSE=1``.

Usage from a bench::

    from bench.measured import run_measured
    side = run_measured("bench.compaction_bench:run_compaction", {"source": str(src), ...})
    side["wall"], side["cpu"], side["peak_mib"], side["result"]
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_MARK = "bench.measured result: "


def run_measured(target: str, kwargs: dict[str, Any] | None = None, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``target`` (``"package.module:function"``) with ``kwargs`` in a child process.

    :return: ``{"result": <the function's return value>, "wall": s, "cpu": s, "peak_mib": MiB}``
    :raises RuntimeError: when the child fails (its stderr tail is in the message)
    """
    path = os.pathsep.join([str(ROOT / "plugins"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    child_env = {**os.environ, **(env or {}), "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-m", "bench.measured", target, json.dumps(kwargs or {})],
        cwd=ROOT, env=child_env, capture_output=True, text=True, check=False,
    )
    sys.stderr.write(done.stderr[-4000:] if done.returncode else "")
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode or not lines:
        raise RuntimeError(f"{target} failed with exit code {done.returncode}: {done.stderr[-2000:]}")
    if os.environ.get("DAGFOUNDRY_BENCH_VERBOSE"):  # the child's own output (Spark's log lines) is noise otherwise
        for line in done.stdout.splitlines():
            if not line.startswith(_MARK):
                print(line, flush=True)
    return json.loads(lines[-1][len(_MARK):])


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages and the core count, as benches print them."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child(target: str, kwargs_json: str) -> None:
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    wall, cpu = time.perf_counter(), _cpu()
    result = function(**json.loads(kwargs_json))
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(_MARK + json.dumps({"result": result, "wall": wall, "cpu": cpu, "peak_mib": peak_kib / 1024}), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
