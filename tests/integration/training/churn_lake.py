"""The retraining tests' lake: dates of the demo events and labels, the example spec and its variants."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "dag_configs" / "models" / "shop_churn.yaml"
FIRST_EVENT_DAY = dt.date(2025, 1, 1)
EVENT_DAYS = 151  # 2025-01-01 .. 2025-05-31
#: A weekly run whose data interval ends Monday 2025-05-12 04:00: its labels end at 2025-05-12 00:00.
LOGICAL_DATE = dt.datetime(2025, 5, 12, 4, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2025, 5, 12, tzinfo=dt.UTC)
#: Specs (each its own registered model) that must fail, by name: the example with lines replaced.
FAILING_VARIANTS = {
    "churn_bad_trainer": {"entrypoint: include.models.churn:train": "entrypoint: include.models.no_such_module:train"},
    "churn_trainer_raises": {"params: {n_estimators: 100,": "params: {n_estimators: -1,"},
    "churn_bad_labels": {"label_column: churned": "label_column: cancelled"},
}


def variant(name: str, model: str, replacements: dict[str, str]) -> str:
    """Return the example spec renamed, with retries off and some lines replaced."""
    text = EXAMPLE.read_text()
    # The example runs on the feature view's Asset; alone in a test folder no spec produces it,
    # so the variants run weekly, as the example's comment offers.
    text = re.sub(r"(?m)^schedule:.*$", 'schedule: "0 4 * * 1"', text)
    text = text.replace("name: shop_churn_retraining", f"name: {name}").replace(
        "registered_model: shop_churn", f"registered_model: {model}"
    )
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text + "retries: 0\n"
