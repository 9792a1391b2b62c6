"""Holdout metrics and dataset digests shared by the retraining and model_promotion kinds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagfoundry.models.datasets import MLFLOW_DIGEST_LENGTH, frame_digest, mlflow_dataset_digest
from dagfoundry.models.scoring import compute_metrics, metric_direction, metrics_of_task, predict_scores


def test_digest_changes_with_any_value_column_or_order():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    digest = frame_digest(frame)
    assert digest == frame_digest(frame.copy())
    assert digest.startswith("sha256:")
    assert frame_digest(frame.assign(b=["x", "y", "z"])) != digest
    assert frame_digest(frame.iloc[::-1].reset_index(drop=True)) != digest
    assert frame_digest(frame.rename(columns={"a": "c"})) != digest
    assert frame_digest(frame.astype({"a": "float64"})) != digest


def test_mlflow_dataset_digest_is_the_longest_prefix_mlflow_accepts():
    from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE

    digest = frame_digest(pd.DataFrame({"a": [1, 2, 3]}))
    short = mlflow_dataset_digest(digest)
    assert MLFLOW_DIGEST_LENGTH == MAX_DATASET_DIGEST_SIZE == len(short)
    assert digest.startswith(short) and short.startswith("sha256:")


def test_classification_metrics_match_a_perfect_and_a_useless_ranking():
    truth = np.array([0, 0, 1, 1])
    perfect = compute_metrics("binary_classification", truth, np.array([0.1, 0.2, 0.8, 0.9]), ["roc_auc", "accuracy"])
    assert perfect == {"roc_auc": 1.0, "accuracy": 1.0}
    inverted = compute_metrics("binary_classification", truth, np.array([0.9, 0.8, 0.2, 0.1]), ["roc_auc"])
    assert inverted["roc_auc"] == 0.0


def test_metric_of_another_task_or_one_class_holdout_is_refused():
    with pytest.raises(ValueError, match="is for regression"):
        compute_metrics("binary_classification", [0, 1], np.array([0.2, 0.7]), ["rmse"])
    with pytest.raises(ValueError, match="needs both classes"):
        compute_metrics("binary_classification", [1, 1], np.array([0.2, 0.7]), ["roc_auc"])
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        compute_metrics("binary_classification", [0, 1], np.array([0.2, 0.7]), ["auc"])


def test_regression_metrics_and_directions():
    result = compute_metrics("regression", [1.0, 2.0, 3.0], np.array([1.0, 2.0, 5.0]), ["rmse", "mae", "r2"])
    assert result["mae"] == pytest.approx(2 / 3)
    assert result["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert metric_direction("rmse") == "lower" and metric_direction("roc_auc") == "higher"
    assert "r2" in metrics_of_task("regression") and "roc_auc" not in metrics_of_task("regression")


def test_classifier_scores_are_positive_class_probabilities():
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"f": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    scores = predict_scores(model, x, "binary_classification")
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert scores[3] > scores[0]
