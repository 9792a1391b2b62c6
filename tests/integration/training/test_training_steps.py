"""Retraining steps on the shared lake: reproducibility, drift, leakage (failures run through\nthe DAG: test_retraining_dag.py)."""

from __future__ import annotations

import pytest
from churn_lake import CUTOFF

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(churn_lake, churn_spec, tmp_path_factory):
    from dagfoundry.training.steps import build_step, train_step, trainer_params

    folder = tmp_path_factory.mktemp("steps_a")
    summary = build_step(churn_spec, churn_lake, CUTOFF, folder)
    metrics = train_step(churn_spec, folder, trainer_params(churn_spec, {}))
    return folder, summary, metrics


def test_rerun_of_the_same_date_gives_the_same_digests_and_metrics(built, churn_lake, churn_spec, tmp_path):
    from dagfoundry.training.steps import build_step, train_step, trainer_params

    _, summary, metrics = built
    again = build_step(churn_spec, churn_lake, CUTOFF, tmp_path)
    assert again == summary
    assert train_step(churn_spec, tmp_path, trainer_params(churn_spec, {})) == metrics


def test_model_beats_the_baseline_and_shuffled_labels_do_not(built, churn_spec, tmp_path):
    import pandas as pd

    from dagfoundry.training.steps import train_step, trainer_params

    folder, _, metrics = built
    assert metrics["roc_auc"] > 0.75  # a constant predictor scores 0.5
    train = pd.read_parquet(folder / "train.parquet")
    train["churned"] = train["churned"].sample(frac=1.0, random_state=5).to_numpy()
    train.to_parquet(tmp_path / "train.parquet", index=False)
    (tmp_path / "holdout.parquet").write_bytes((folder / "holdout.parquet").read_bytes())
    shuffled = train_step(churn_spec, tmp_path, trainer_params(churn_spec, {}))
    assert 0.4 < shuffled["roc_auc"] < 0.6


def test_drift_fires_on_a_shifted_set_and_not_on_an_unshifted_one(built, churn_spec):
    import pandas as pd

    from dagfoundry.training.drift import compare

    folder, _, _ = built
    train = pd.read_parquet(folder / "train.parquet")
    features = churn_spec.feature_columns
    early, late = train.iloc[::2], train.iloc[1::2]
    calm = compare(early, late, features, churn_spec.drift)
    assert calm["drifted"] == [] and calm["beyond_hard_bound"] == []
    shifted = late.assign(amount_sum_7d=late["amount_sum_7d"] * 3 + 50)
    report = compare(early, shifted, features, churn_spec.drift)
    assert report["drifted"] == ["amount_sum_7d"]
    assert report["features"]["amount_sum_7d"]["ks"] > churn_spec.drift.ks_threshold
