"""Modules the promotion factory imports at parse time stay off the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ["pandas", "numpy", "duckdb", "sklearn", "scipy", "mlflow", "matplotlib", "skops", "pyarrow"]


def test_promotion_modules_import_no_heavy_library():
    code = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(ROOT / 'plugins')!r}, {str(ROOT)!r}]\n"
        "import dagfoundry.factories.model_promotion, dagfoundry.specs.model_promotion\n"
        "import dagfoundry.promotion.gates, dagfoundry.promotion.evaluation, dagfoundry.promotion.switch\n"
        "import dagfoundry.promotion.audit, dagfoundry.promotion.chart, dagfoundry.promotion.steps\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
