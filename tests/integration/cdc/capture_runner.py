"""Run one embedded capture in its own process (tests kill it, or make it die on purpose).

Usage: ``python capture_runner.py <job.json>``. Exit codes: 0 landed (summary JSON on the
last stdout line), 3 the capture raised (message on stderr), 17 died on purpose after
landing and before committing offsets (fault injection).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "plugins"))

from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable, SourceConnection  # noqa: E402
from dagfoundry.cdc.embedded_capture import CaptureError, CaptureLimits, capture_embedded  # noqa: E402
from dagfoundry.errors import DagfoundryError  # noqa: E402


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    config = CaptureConfig(
        source=job["source"],
        conn_id="unused_in_tests",
        tables=tuple(CapturedTable(s, t, tuple(k)) for s, t, k in job["tables"]),
        signal_table=job.get("signal_table"),
        heartbeat_interval_ms=job.get("heartbeat_interval_ms", 1000),
        extra_properties=tuple(job.get("extra_properties", {}).items()),
        replica_identity_full=job.get("replica_identity_full", False),
    )
    connection = SourceConnection("127.0.0.1", 5432, job["dbname"], job.get("user", "postgres"))
    after_landing = (lambda: os._exit(17)) if job.get("fault") == "after_landing" else None
    try:
        result = capture_embedded(
            config, Path(job["lake_root"]), limits=CaptureLimits(**job.get("limits", {})),
            connection=connection, after_landing=after_landing,
        )
    except (CaptureError, DagfoundryError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    print(json.dumps(result.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
