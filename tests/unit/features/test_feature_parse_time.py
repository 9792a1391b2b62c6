"""Modules a DAG factory imports at parse time stay on the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ["pandas", "pyarrow", "pyspark", "redis", "numpy", "airflow"]


def test_feature_modules_import_no_heavy_library():
    code = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(ROOT / 'plugins')!r}, {str(ROOT)!r}]\n"
        "import dagfoundry.features.definition, dagfoundry.features.source_readiness\n"
        "import dagfoundry.features.compute, dagfoundry.features.online_store\n"
        "import dagfoundry.features.materialize, dagfoundry.features.training_set\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
