"""The retraining DAG's task callables: each reads and writes the run's folder, nothing else.

A run's folder is ``<lake>/_training/<dag_id>/<run_id>/`` (training and holdout sets, the
fitted model, reports): re-running a task overwrites exactly its own files, and nothing
reaches MLflow before the last step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import pickle
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import TrainingDataError

if TYPE_CHECKING:
    from dagfoundry.models.tracking import MlflowLocation
    from dagfoundry.specs.retraining import RetrainingSpec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]

def run_folder(lake_root: Path, dag_id: str, run_id: str) -> Path:
    """Return (and create) the folder of one DAG run's intermediate files."""
    folder = lake_root / "_training" / dag_id / re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

def cutoff_of_run(data_interval_end: dt.datetime | None, run_after: dt.datetime) -> dt.datetime:
    """Return the end of a run's label window: midnight UTC of its interval end (or of when it was due).

    Flooring to the day makes every run of the same date, manual re-runs included, use the
    same labels.
    """
    moment = (data_interval_end or run_after).astimezone(dt.UTC)
    return dt.datetime.combine(moment.date(), dt.time(), tzinfo=dt.UTC)

def spec_hash(spec: RetrainingSpec) -> str:
    """Return sha256 of the spec's canonical content (validated values, keys sorted)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

def code_version() -> str:
    """Return the project's git commit, or ``unknown`` outside a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"

def build_step(spec: RetrainingSpec, lake_root: Path, cutoff: dt.datetime, folder: Path) -> dict[str, Any]:
    """Build the training set and write ``train.parquet``, ``holdout.parquet`` and ``build.json``.

    The sets go from Arrow to Parquet directly. Their digests are of the pandas frames the
    trainer and MLflow will read from those files (one set converted at a time, then freed).
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from dagfoundry.models.datasets import frame_digest
    from dagfoundry.training.training_data import build_training_set

    built = build_training_set(spec, lake_root, cutoff)
    digests = {}
    for name, table in (("train", built.train), ("holdout", built.holdout)):
        pq.write_table(table, folder / f"{name}.parquet")
        digests[name] = frame_digest(pd.read_parquet(folder / f"{name}.parquet"))
    summary = {
        "cutoff": cutoff.isoformat(),
        "train_rows": built.train.num_rows,
        "holdout_rows": built.holdout.num_rows,
        "training_digest": digests["train"],
        "holdout_digest": digests["holdout"],
        "feature_dates": built.feature_dates,
        "label_source_version": built.label_source_version,
        "engine": built.engine,
    }
    log.info("training set of %s: %d training and %d holdout rows, features joined on %s (feature dates %s)",
             spec.name, built.train.num_rows, built.holdout.num_rows, built.engine, built.feature_dates)
    _write_json(folder / "build.json", summary)
    return summary

def validate_step(spec: RetrainingSpec, folder: Path, location: MlflowLocation | None = None,
                  dag_run: str = "") -> dict[str, Any]:
    """Run the spec's GX checks on the whole set (training and holdout); raise on failure.

    :param location: where to log a failed validation (a FAILED MLflow run with the GX report);
        None to log nothing
    :param dag_run: ``<dag_id>/<run_id>``, the failed run's name and tag
    """
    import pandas as pd

    from dagfoundry.training.validation import require_valid, validate_frame

    frame = pd.concat([pd.read_parquet(folder / "train.parquet"), pd.read_parquet(folder / "holdout.parquet")],
                      ignore_index=True)
    report = validate_frame(frame, spec.checks, suite_name=f"{spec.name}_checks")
    _write_json(folder / "validation.json", report)
    if not report["success"] and location is not None:
        _log_failed_validation(spec, report, location, dag_run)
    require_valid(report)
    return {"evaluated": report["evaluated"], "success": report["success"]}

def _log_failed_validation(spec: RetrainingSpec, report: dict[str, Any], location: MlflowLocation,
                           dag_run: str) -> None:
    """Log the failed validation to MLflow; an MLflow problem is logged, never hides the data problem."""
    from dagfoundry.training.mlflow_logging import log_failed_validation

    try:
        run_id = log_failed_validation(spec.registered_model, dag_run, report, location)
    except Exception:  # noqa: BLE001 - the task fails for the data checks either way
        log.warning("could not log the failed validation of %s to MLflow", dag_run, exc_info=True)
        return
    log.info("failed validation logged to MLflow: run %s (status FAILED, artifact reports/validation.json)", run_id)

def drift_step(spec: RetrainingSpec, folder: Path, location: MlflowLocation, retrain_when: str) -> dict[str, Any]:
    """Compare the new training features with the champion's sample; decide whether to train.

    :return: the report, with ``train`` (whether training goes on) and ``reason``
    :raises TrainingDataError: a feature's PSI is beyond the hard bound
    """
    import pandas as pd

    from dagfoundry.training.drift import compare
    from dagfoundry.training.mlflow_logging import champion_sample

    champion = champion_sample(spec.registered_model, location)
    if champion is None:
        report: dict[str, Any] = {"champion": None, "train": True,
                                  "reason": f"no champion of {spec.registered_model!r}: drift check skipped"}
    else:
        version, reference = champion
        current = pd.read_parquet(folder / "train.parquet", columns=spec.feature_columns)
        report = {"champion": version, **compare(reference, current, spec.feature_columns, spec.drift)}
        if report["beyond_hard_bound"]:
            _write_json(folder / "drift.json", report)
            raise TrainingDataError(
                f"feature(s) {report['beyond_hard_bound']} drifted beyond psi_hard_bound "
                f"{spec.drift.psi_hard_bound} against champion version {version}: "
                + ", ".join(f"{n} psi={report['features'][n]['psi']}" for n in report["beyond_hard_bound"])
            )
        drifted = bool(report["drifted"])
        report["train"] = retrain_when == "always" or drifted
        report["reason"] = (
            f"drift in {report['drifted']}" if drifted else "no feature drifted"
        ) + f" (retrain_when: {retrain_when})"
    _write_json(folder / "drift.json", report)
    return report

def train_step(spec: RetrainingSpec, folder: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Fit the trainer on the training set, score the holdout, write ``model.pkl`` and ``metrics.json``."""
    import pandas as pd

    from dagfoundry.models.scoring import compute_metrics, predict_scores
    from dagfoundry.training.trainer import fit

    label = spec.training.label_source.label_column
    train = pd.read_parquet(folder / "train.parquet")
    holdout = pd.read_parquet(folder / "holdout.parquet")
    model = fit(spec.trainer.entrypoint, train[[*spec.feature_columns, label]], label, params)
    scores = predict_scores(model, holdout[spec.feature_columns], spec.trainer.task)
    metrics = compute_metrics(spec.trainer.task, holdout[label].to_numpy(), scores, spec.metrics)
    with open(folder / "model.pkl", "wb") as handle:
        pickle.dump(model, handle)
    _write_json(folder / "metrics.json", metrics)
    return metrics

def register_step(
    spec: RetrainingSpec, folder: Path, location: MlflowLocation, dag_run: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Log the run to MLflow and register the model version (alias ``challenger``)."""
    import pandas as pd

    from dagfoundry.training.mlflow_logging import RunRecord, log_and_register

    build = json.loads((folder / "build.json").read_text())
    with open(folder / "model.pkl", "rb") as handle:
        model = pickle.load(handle)  # noqa: S301 - written by this run's train task
    reports = {name: json.loads((folder / f"{name}.json").read_text())
               for name in ("validation", "drift") if (folder / f"{name}.json").exists()}
    record = RunRecord(
        registered_model=spec.registered_model,
        dag_run=dag_run,
        spec_hash=spec_hash(spec),
        code_version=code_version(),
        task=spec.trainer.task,
        label_column=spec.training.label_source.label_column,
        features=spec.feature_columns,
        params=params,
        metrics=json.loads((folder / "metrics.json").read_text()),
        training_digest=build["training_digest"],
        holdout_digest=build["holdout_digest"],
        feature_dates=build["feature_dates"],
        label_source_version=build["label_source_version"],
        reports=reports,
    )
    train = pd.read_parquet(folder / "train.parquet")
    holdout = pd.read_parquet(folder / "holdout.parquet")
    return log_and_register(record, model, train, holdout, spec.split.seed, location)

def trainer_params(spec: RetrainingSpec, run_params: dict[str, Any]) -> dict[str, Any]:
    """Return the trainer's parameters: the spec's, overridden by the run's ``hp_<name>`` Params, plus the seed."""
    params: dict[str, Any] = dict(spec.trainer.params)
    for name in params:
        override = run_params.get(f"hp_{name}")
        if override is not None:
            params[name] = override
    params.setdefault("seed", spec.split.seed)
    return params

def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
