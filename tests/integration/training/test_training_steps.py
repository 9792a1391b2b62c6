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


def test_the_spark_engine_builds_the_same_sets_as_the_embedded_one(built, churn_lake, churn_spec, tmp_path):
    """engine: spark runs the join by spark-submit; the sets (digests) are those of the default DuckDB run."""
    from dagfoundry.training.steps import build_step

    _, summary, _ = built
    on_spark = churn_spec.model_copy(update={"engine": "spark"})
    rebuilt = build_step(on_spark, churn_lake, CUTOFF, tmp_path)
    assert summary["engine"] == "duckdb" and rebuilt["engine"] == "spark"
    assert {**rebuilt, "engine": "duckdb"} == summary
    assert not list((churn_lake / "_staging" / "training").glob("*/*")), "the join's staging was left behind"


def shadow_lake(churn_lake, base, labels):
    """Return a lake under ``base`` that shares the test lake's features and holds ``labels`` as its label source."""
    from include.demo.churn_labels import TABLE

    lake = base / "lake"
    (lake / TABLE).mkdir(parents=True)
    (lake / "features").mkdir()
    for view in (churn_lake / "features").iterdir():
        (lake / "features" / view.name).symlink_to(view, target_is_directory=True)
    labels.to_parquet(lake / TABLE / "part-0.parquet", index=False)
    return lake


def test_model_beats_the_baseline_and_labels_shuffled_in_the_source_do_not(built, churn_lake, churn_spec, tmp_path):
    import pandas as pd

    from dagfoundry.training.steps import build_step, train_step, trainer_params
    from include.demo.churn_labels import TABLE

    folder, summary, metrics = built
    assert metrics["roc_auc"] > 0.75  # a constant predictor scores 0.5
    labels = pd.read_parquet(churn_lake / TABLE / "part-0.parquet")
    shuffled_labels = labels.assign(churned=labels["churned"].sample(frac=1.0, random_state=5).to_numpy())
    lake = shadow_lake(churn_lake, tmp_path, shuffled_labels)
    (tmp_path / "run").mkdir()
    # The real build step (labels read, point-in-time join, split) on the shuffled label source.
    rebuilt = build_step(churn_spec, lake, CUTOFF, tmp_path / "run")
    assert rebuilt["label_source_version"] != summary["label_source_version"]
    assert (rebuilt["train_rows"], rebuilt["holdout_rows"]) == (summary["train_rows"], summary["holdout_rows"])
    original = pd.read_parquet(folder / "train.parquet")
    again = pd.read_parquet(tmp_path / "run" / "train.parquet")
    keys = ["customer_id", "label_time"]
    # The same examples with the same features: only the labels moved.
    pd.testing.assert_frame_equal(
        again.drop(columns="churned").sort_values(keys).reset_index(drop=True),
        original.drop(columns="churned").sort_values(keys).reset_index(drop=True),
    )
    assert (again.sort_values(keys)["churned"].to_numpy() != original.sort_values(keys)["churned"].to_numpy()).any()
    shuffled = train_step(churn_spec, tmp_path / "run", trainer_params(churn_spec, {}))
    assert 0.4 < shuffled["roc_auc"] < 0.6, shuffled


def test_point_in_time_join_excludes_a_planted_feature_from_after_the_label_time(churn_lake, churn_spec, tmp_path):
    """Control: a feature holding each label's own outcome, dated the label day (complete only after
    the label time), is excluded by the join; a same-day join, as a leaky pipeline does, scores near 1."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    from dagfoundry.features.compute import PART_FILE
    from dagfoundry.specs.retraining import FeatureViewRefSpec
    from dagfoundry.training.steps import build_step, train_step, trainer_params
    from include.demo.churn_labels import TABLE

    labels = pd.read_parquet(churn_lake / TABLE / "part-0.parquet")
    lake = shadow_lake(churn_lake, tmp_path, labels)
    rng = np.random.default_rng(11)
    planted = lake / "features" / "planted_leak"
    for label_time, rows in labels.groupby("label_time"):
        day = pd.Timestamp(label_time).tz_convert("UTC").date()
        # Dated the label day: its value is the label itself (computed from after the label time).
        # The day before (what a point-in-time join may use): noise.
        for date, echo in ((day, rows["churned"].to_numpy()),
                           (day - dt.timedelta(days=1), rng.integers(0, 2, len(rows)))):
            (planted / f"feature_date={date}").mkdir(parents=True)
            pd.DataFrame({"customer_id": rows["customer_id"].to_numpy(), "label_echo": echo.astype("int64")}).to_parquet(
                planted / f"feature_date={date}" / PART_FILE, index=False)
    training = churn_spec.training.model_copy(
        update={"feature_views": (FeatureViewRefSpec(view="planted_leak", features=("label_echo",)),)})
    spec = churn_spec.model_copy(update={"training": training})
    assert spec.feature_columns == ["label_echo"]
    (tmp_path / "pit").mkdir()
    build_step(spec, lake, CUTOFF, tmp_path / "pit")
    honest = train_step(spec, tmp_path / "pit", trainer_params(spec, {}))
    assert 0.4 < honest["roc_auc"] < 0.6, honest

    # The leaky pipeline: the same rows joined to the features of the label's own date.
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    same_day = labels.assign(label_time=labels["label_time"].dt.tz_convert("UTC"))[["customer_id", "label_time",
                                                                                   "churned"]]
    for name in ("train", "holdout"):
        frame = pd.read_parquet(tmp_path / "pit" / f"{name}.parquet")
        assert frame["label_echo"].notna().all()  # the join found the day-before partition: noise, not nothing
        leaked = frame.drop(columns="label_echo").merge(
            same_day.rename(columns={"churned": "label_echo"}), on=["customer_id", "label_time"], how="left")
        assert len(leaked) == len(frame) and leaked["label_echo"].notna().all()
        leaked.to_parquet(leaky / f"{name}.parquet", index=False)
    leaked_metrics = train_step(spec, leaky, trainer_params(spec, {}))
    assert leaked_metrics["roc_auc"] > 0.95, leaked_metrics


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
