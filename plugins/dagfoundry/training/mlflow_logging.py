"""The MLflow side of a retraining run: the champion's reference data, the run, the model version.

What is written follows ``docs/model-registry-contract.md``; tag names come from
:mod:`dagfoundry.models.registry_tags`. Besides the contract's artifacts a run logs
``datasets/train_sample.parquet`` (a seeded sample of the training features, at most
:data:`SAMPLE_ROWS` rows): the next run's drift check compares against it when this
version is the champion.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.models import registry_tags as tags

if TYPE_CHECKING:
    import pandas as pd

    from dagfoundry.models.tracking import MlflowLocation

SAMPLE_ARTIFACT_PATH = "datasets/train_sample.parquet"
TRAIN_ARTIFACT_PATH = "datasets/train.parquet"
SAMPLE_ROWS = 20_000
#: The training set itself is logged as an artifact only up to this many rows.
SMALL_TRAINING_SET = 200_000
#: MLflow truncates run tag values beyond this many characters (``MAX_TAG_VAL_LENGTH``).
_RUN_TAG_LIMIT = 8000


@dataclass(frozen=True)
class RunRecord:
    """What the run logs besides the model: identity, data, reports, metrics."""

    registered_model: str
    dag_run: str
    spec_hash: str
    code_version: str
    task: str
    label_column: str
    features: list[str]
    params: dict[str, Any]
    metrics: dict[str, float]
    training_digest: str
    holdout_digest: str
    feature_dates: str
    label_source_version: str
    reports: dict[str, dict]


def champion_sample(registered_model: str, location: MlflowLocation) -> tuple[str, pd.DataFrame] | None:
    """Return the champion's version and its training sample, or None when there is no champion."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from dagfoundry.models.tracking import configure

    configure(location)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_model, tags.CHAMPION)
    except MlflowException:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=SAMPLE_ARTIFACT_PATH,
                                                   dst_path=folder)
        return str(version.version), pd.read_parquet(path)


def log_and_register(
    record: RunRecord, model: Any, train: pd.DataFrame, holdout: pd.DataFrame, seed: int, location: MlflowLocation
) -> dict[str, Any]:
    """Log the run, register a new model version with the contract's tags and the alias ``challenger``.

    :return: ``{"model", "version", "run_id", "holdout_digest", "metrics"}`` (the Asset event's extra)
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.models import infer_signature

    from dagfoundry.models.datasets import mlflow_dataset_digest
    from dagfoundry.models.scoring import predict_scores
    from dagfoundry.models.tracking import configure, ensure_experiment

    configure(location)
    experiment_id = ensure_experiment(tags.experiment_name(record.registered_model), location)
    features = holdout[record.features]
    with mlflow.start_run(experiment_id=experiment_id, run_name=record.dag_run.replace("/", " ")) as run:
        mlflow.log_params({f"trainer.{k}": v for k, v in sorted(record.params.items())})
        mlflow.log_params({"seed": seed, "label_column": record.label_column, "features": ",".join(record.features)})
        mlflow.log_metrics(record.metrics)
        mlflow.set_tags(_run_tags(record))
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder)
            (base / "datasets").mkdir()
            holdout.to_parquet(base / tags.HOLDOUT_ARTIFACT_PATH, index=False)
            sample = train[record.features].sample(n=min(SAMPLE_ROWS, len(train)), random_state=seed)
            sample.to_parquet(base / SAMPLE_ARTIFACT_PATH, index=False)
            if len(train) <= SMALL_TRAINING_SET:
                train.to_parquet(base / TRAIN_ARTIFACT_PATH, index=False)
            (base / "reports").mkdir()
            for name, report in record.reports.items():
                (base / "reports" / f"{name}.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
            mlflow.log_artifacts(folder)
        for context, frame, digest in (("training", train, record.training_digest),
                                       ("holdout", holdout, record.holdout_digest)):
            dataset = from_pandas(frame, name=context, targets=record.label_column,
                                  digest=mlflow_dataset_digest(digest))
            mlflow.log_input(dataset, context=context, tags={tags.DATASET_DIGEST: digest})
        signature = infer_signature(features, predict_scores(model, features, record.task))  # type: ignore[arg-type]
        info = mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=features.head(5),
                                        skops_trusted_types=_own_model_types(model))
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, record.registered_model, tags=_version_tags(record))
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(record.registered_model, tags.CHALLENGER, version.version)
    return {
        "model": record.registered_model,
        "version": str(version.version),
        "run_id": run_id,
        "holdout_digest": record.holdout_digest,
        "metrics": record.metrics,
    }


def log_failed_validation(registered_model: str, dag_run: str, report: dict[str, Any],
                          location: MlflowLocation) -> str:
    """Log a FAILED run holding the GX report, so the MLflow UI shows why no version came; return its id.

    The run is in the model's experiment with the tags ``dagfoundry.spec``, ``dagfoundry.dag_run``
    and ``dagfoundry.failure`` (the failing expectations); no model, no version.
    """
    import mlflow

    from dagfoundry.models.tracking import configure, ensure_experiment

    configure(location)
    client = mlflow.MlflowClient()
    failing = "; ".join(f"{f['expectation']}({f['kwargs']}): observed {f['observed']!r}" for f in report["failed"])
    run = client.create_run(
        ensure_experiment(tags.experiment_name(registered_model), location),
        run_name=dag_run.replace("/", " "),
        tags={tags.SPEC: dag_run.split("/", 1)[0], tags.DAG_RUN: dag_run,
              tags.FAILURE: f"data checks failed: {failing}"[:_RUN_TAG_LIMIT],
              "mlflow.source.name": dag_run.split("/", 1)[0]},
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "validation.json"
        path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        client.log_artifact(run.info.run_id, str(path), "reports")
    client.set_terminated(run.info.run_id, status="FAILED")
    return str(run.info.run_id)


def _own_model_types(model: Any) -> list[str]:
    """Return the types skops does not trust by default in ``model``.

    The model was fitted by this run's own trainer a task ago, so its types are trusted; the
    list is stored with the model, and loaders see exactly which types were allowed.
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _version_tags(record: RunRecord) -> dict[str, str]:
    return {
        tags.SPEC: record.dag_run.split("/", 1)[0],
        tags.SPEC_HASH: record.spec_hash,
        tags.CODE_VERSION: record.code_version,
        tags.TASK: record.task,
        tags.LABEL_COLUMN: record.label_column,
        tags.FEATURES: json.dumps(record.features),
        tags.HOLDOUT_DIGEST: record.holdout_digest,
        tags.HOLDOUT_ARTIFACT: tags.HOLDOUT_ARTIFACT_PATH,
        tags.TRAINING_DIGEST: record.training_digest,
        tags.FEATURE_DATES: record.feature_dates,
        tags.METRICS: json.dumps(record.metrics, sort_keys=True),
        tags.DAG_RUN: record.dag_run,
        tags.LABEL_SOURCE_VERSION: record.label_source_version,
    }


def _run_tags(record: RunRecord) -> dict[str, str]:
    return {**_version_tags(record), "mlflow.source.name": record.dag_run.split("/", 1)[0]}
