"""Tag names and aliases of the model registry contract (``docs/model-registry-contract.md``)."""

from __future__ import annotations

PREFIX = "dagfoundry."

SPEC = PREFIX + "spec"
SPEC_HASH = PREFIX + "spec_hash"
CODE_VERSION = PREFIX + "code_version"
TASK = PREFIX + "task"
LABEL_COLUMN = PREFIX + "label_column"
FEATURES = PREFIX + "features"
HOLDOUT_DIGEST = PREFIX + "holdout_digest"
HOLDOUT_ARTIFACT = PREFIX + "holdout_artifact"
TRAINING_DIGEST = PREFIX + "training_digest"
FEATURE_DATES = PREFIX + "feature_dates"
METRICS = PREFIX + "metrics"
DAG_RUN = PREFIX + "dag_run"

#: Where a retraining run stores its holdout set, relative to the run's artifact root.
HOLDOUT_ARTIFACT_PATH = "datasets/holdout.parquet"

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"


def experiment_name(registered_model: str) -> str:
    """Return the MLflow experiment of a registered model's training runs."""
    return f"dagfoundry/{registered_model}"

#: Beyond the contract's table (retraining only, informational): the digest of the labels read.
LABEL_SOURCE_VERSION = PREFIX + "label_source_version"

#: Tag of a run's dataset inputs (``training``, ``holdout``): the set's full digest. MLflow's own
#: dataset digest is its first 36 characters (:func:`dagfoundry.models.datasets.mlflow_dataset_digest`).
DATASET_DIGEST = PREFIX + "digest"

#: Run tag of a run that stopped before training (failed data checks): what failed.
FAILURE = PREFIX + "failure"
