"""Small models of known quality, registered in MLflow as the retraining kind registers them.

The data has two regions: in ``north`` (3/4 of the rows) the label follows ``x1`` and ``x2``,
in ``south`` it follows ``x3``; ``x4`` is noise. So a model on ``[x1, x2, x3]`` beats one on
``[x1, x2]`` overall, which beats one on ``[x3]`` overall but loses to it in ``south``, and a
model on ``[x4]`` is worse than all of them.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

FEATURES = {
    "all": ["x1", "x2", "x3"],
    "north": ["x1", "x2"],
    "south": ["x3"],
    "noise": ["x4"],
}


def frames(seed: int = 7, rows: int = 1200):
    """Return (train, holdout) frames with features x1..x4, ``region`` and the label ``churned``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(1, 5)})
    frame["region"] = np.where(rng.random(rows) < 0.75, "north", "south")
    logit = np.where(frame["region"] == "north", 3 * frame["x1"] + 2 * frame["x2"], 3 * frame["x3"])
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    frame["customer_id"] = np.arange(rows, dtype="int64")
    half = rows // 2
    return frame.iloc[:half].reset_index(drop=True), frame.iloc[half:].reset_index(drop=True)


def register(model: str, kind: str, lake: Path, seed: int = 7) -> str:
    """Fit a logistic regression on ``FEATURES[kind]`` and register it (alias challenger); return its version."""
    from sklearn.linear_model import LogisticRegression

    from dagfoundry.models.datasets import frame_digest
    from dagfoundry.models.tracking import local_default
    from dagfoundry.training.mlflow_logging import RunRecord, log_and_register

    train, holdout = frames(seed)
    features = FEATURES[kind]
    fitted = LogisticRegression().fit(train[features], train["churned"])
    record = RunRecord(
        registered_model=model, dag_run=f"{model}_retraining/fixture_{kind}", spec_hash="sha256:fixture",
        code_version="fixture", task="binary_classification", label_column="churned", features=features,
        params={"kind": kind}, metrics={}, training_digest=frame_digest(train),
        holdout_digest=frame_digest(holdout), feature_dates="2025-01-01..2025-01-31",
        label_source_version="fixture", reports={},
    )
    return str(log_and_register(record, fitted, train, holdout, seed, local_default(lake))["version"])


def spec_text(name: str, model: str, extra: str = "", approval: str = "auto") -> str:
    """Return a promotion spec for ``model`` (manual schedule, retries off) with extra YAML lines."""
    return (
        f"kind: model_promotion\nname: {name}\nregistered_model: {model}\nretries: 0\n"
        "metrics:\n  roc_auc: {floor: 0.55, min_improvement: 0.0}\n  log_loss: {min_improvement: -0.02}\n"
        f"approval: {{mode: {approval}, timeout: 1h}}\n" + extra
    )
