"""Predictions and holdout metrics: one definition for training and for promotion.

Retraining logs these metrics for the challenger; promotion computes them again for the
challenger and the champion on the same rows, so the comparison never trusts copied figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Task = Literal["binary_classification", "regression"]
Direction = Literal["higher", "lower"]

#: metric -> (task, which direction is better)
METRICS: dict[str, tuple[Task, Direction]] = {
    "roc_auc": ("binary_classification", "higher"),
    "pr_auc": ("binary_classification", "higher"),
    "log_loss": ("binary_classification", "lower"),
    "brier": ("binary_classification", "lower"),
    "accuracy": ("binary_classification", "higher"),
    "f1": ("binary_classification", "higher"),
    "precision": ("binary_classification", "higher"),
    "recall": ("binary_classification", "higher"),
    "rmse": ("regression", "lower"),
    "mae": ("regression", "lower"),
    "r2": ("regression", "higher"),
}

#: metrics computed from hard labels (a 0.5 threshold on the positive-class probability)
_LABEL_METRICS = {"accuracy", "f1", "precision", "recall"}


def metric_direction(name: str) -> Direction:
    """Return whether a higher or a lower value of ``name`` is better."""
    return METRICS[name][1]


def metrics_of_task(task: Task) -> list[str]:
    """Return the metric names that apply to ``task``, sorted."""
    return sorted(name for name, (kind, _) in METRICS.items() if kind == task)


def predict_scores(model: Any, features: pd.DataFrame, task: Task) -> np.ndarray:
    """Return what the metrics are computed on: the positive-class probability, or the prediction.

    :param model: a fitted model with ``predict`` (and ``predict_proba`` for classifiers)
    :param features: the model's input columns, in the model's order
    """
    import numpy as np

    if task == "binary_classification":
        if hasattr(model, "predict_proba"):
            return np.asarray(model.predict_proba(features))[:, 1].astype("float64")
        return np.asarray(model.predict(features), dtype="float64")
    return np.asarray(model.predict(features), dtype="float64")


def compute_metrics(task: Task, y_true: Iterable[Any], scores: np.ndarray, names: Iterable[str]) -> dict[str, float]:
    """Return ``{metric: value}`` for ``names`` on one holdout.

    :raises ValueError: a metric that does not apply to ``task``, or a holdout it cannot be
        computed on (one class only, for the ranking metrics)
    """
    import numpy as np

    truth = np.asarray(list(y_true) if not hasattr(y_true, "__array__") else y_true)
    results: dict[str, float] = {}
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
        if METRICS[name][0] != task:
            raise ValueError(f"metric {name!r} is for {METRICS[name][0]}, not {task}")
        if name in {"roc_auc", "pr_auc"} and len(np.unique(truth)) < 2:
            raise ValueError(f"metric {name!r} needs both classes in the holdout; it has only {np.unique(truth)}")
        results[name] = _metric(name, truth, scores)
    return results


def _metric(name: str, truth: np.ndarray, scores: np.ndarray) -> float:
    import numpy as np
    from sklearn import metrics as skm

    if name in _LABEL_METRICS:
        labels = (scores >= 0.5).astype(int)
        label_metric = {
            "accuracy": skm.accuracy_score,
            "f1": skm.f1_score,
            "precision": skm.precision_score,
            "recall": skm.recall_score,
        }[name]
        kwargs = {} if name == "accuracy" else {"zero_division": 0}
        return float(label_metric(truth, labels, **kwargs))
    if name == "roc_auc":
        return float(skm.roc_auc_score(truth, scores))
    if name == "pr_auc":
        return float(skm.average_precision_score(truth, scores))
    if name == "log_loss":
        return float(skm.log_loss(truth, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1]))
    if name == "brier":
        return float(skm.brier_score_loss(truth, scores))
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(truth, scores)))
    if name == "mae":
        return float(skm.mean_absolute_error(truth, scores))
    return float(skm.r2_score(truth, scores))
