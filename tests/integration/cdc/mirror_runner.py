"""Run one mirror update (plan, the job on an engine, publish) in its own process, as a task would.

Usage: ``python mirror_runner.py <lake_root> <source> [duckdb|spark]`` (duckdb by default). Tests arm a fail point through
``DAGFOUNDRY_CDC_MIRROR_FAILPOINT`` in the child's environment to kill the step mid-way.
Exit codes: 0 published (summary JSON on the last stdout line), 3 the update raised
(message on stderr), 4 a table was left unmirrored by its quality checks (``failed_tables``),
-9 killed by a fail point in this process (with duckdb, ``after_stage`` kills this process too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "plugins"))

from dagfoundry.cdc.mirror import update_mirrors  # noqa: E402


def main(lake_root: str, source: str, engine: str = "duckdb") -> int:
    try:
        summary = update_mirrors(Path(lake_root), source, engine=engine, conf={"spark.sql.shuffle.partitions": "2"})
    except Exception as exc:  # noqa: BLE001 - the exit code and message are what the test checks
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    print(json.dumps(summary), flush=True)
    if summary.get("failed_tables"):  # a table left unmirrored by its quality checks
        print(f"tables not mirrored: {summary['failed_tables']}", file=sys.stderr, flush=True)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
