"""Modules the retraining factory imports at parse time stay off the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ["pandas", "numpy", "duckdb", "sklearn", "scipy", "mlflow", "great_expectations", "skops", "pyarrow"]


def test_retraining_modules_import_no_heavy_library():
    code = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(ROOT / 'plugins')!r}, {str(ROOT)!r}]\n"
        "import dagfoundry.factories.retraining, dagfoundry.specs.retraining\n"
        "import dagfoundry.training.training_data, dagfoundry.training.validation, dagfoundry.training.drift\n"
        "import dagfoundry.training.trainer, dagfoundry.training.mlflow_logging, dagfoundry.training.steps\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
