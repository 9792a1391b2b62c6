"""Score the challenger and the champion on the same holdout rows, from the MLflow registry.

Metrics come from :mod:`dagfoundry.models.scoring` (never from tags); each model reads its
own feature columns (its ``dagfoundry.features`` tag) from the one holdout frame. The result
is a JSON-safe dict (it travels through XCom to the switch and into the audit records).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.models import registry_tags as tags

if TYPE_CHECKING:
    import pandas as pd

    from dagfoundry.specs.model_promotion import ModelPromotionSpec

#: Predictions are timed this many times; the best is kept (the least disturbed by other load).
LATENCY_REPEATS = 3


class HoldoutProblem(Exception):
    """The holdout cannot be used to judge the models (digest mismatch, missing columns)."""


def load_holdout(spec: ModelPromotionSpec, client: Any, challenger: Any, lake_root: Path,
                 announced_digest: str | None) -> tuple[pd.DataFrame, str]:
    """Return the holdout frame and its digest.

    :param challenger: the challenger's ``ModelVersion``
    :param announced_digest: the digest in the triggering Asset event, if any
    :raises HoldoutProblem: the challenger run's holdout does not match the digest its run recorded
        or the Asset event announced
    """
    import duckdb
    import mlflow
    import pandas as pd

    from dagfoundry.models.datasets import frame_digest

    if spec.holdout.source == "challenger_run":
        artifact = challenger.tags.get(tags.HOLDOUT_ARTIFACT) or tags.HOLDOUT_ARTIFACT_PATH
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(run_id=challenger.run_id, artifact_path=artifact, dst_path=folder)
            frame = pd.read_parquet(path)
        digest = frame_digest(frame)
        recorded = challenger.tags.get(tags.HOLDOUT_DIGEST)
        if recorded != digest:
            raise HoldoutProblem(f"holdout digest mismatch: version {challenger.version} recorded {recorded}, "
                                 f"its run's {artifact} has {digest}")
        if announced_digest and announced_digest != digest:
            raise HoldoutProblem(f"holdout digest mismatch: the Asset event announced {announced_digest}, "
                                 f"version {challenger.version}'s holdout has {digest}")
        return frame, digest
    with duckdb.connect() as con:
        if spec.holdout.source == "table":
            frame = con.sql("SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
                            params=[str(lake_root / str(spec.holdout.table) / "**" / "*.parquet")]).df()
        else:
            frame = con.sql(str(spec.holdout.sql).replace("{lake}", str(lake_root))).df()
    return frame, frame_digest(frame)


def evaluate_version(spec: ModelPromotionSpec, version: Any, holdout: pd.DataFrame, label: str) -> dict[str, Any]:
    """Return one model version's figures on the holdout: metrics, segment metrics, size, latency.

    :raises HoldoutProblem: the holdout lacks the version's feature columns
    """
    import mlflow

    from dagfoundry.models.scoring import compute_metrics, predict_scores

    features = json.loads(version.tags.get(tags.FEATURES) or "[]")
    missing = [c for c in [*features, label] if c not in holdout.columns]
    if not features or missing:
        raise HoldoutProblem(f"the holdout lacks version {version.version}'s column(s) {missing or 'features tag'}")
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{spec.registered_model}/{version.version}",
                                                    dst_path=folder)
        size = sum(p.stat().st_size for p in Path(local).rglob("*") if p.is_file())
        model = mlflow.sklearn.load_model(local)
    task: Any = spec.task
    frame = holdout[features]
    best = float("inf")
    for _ in range(LATENCY_REPEATS):
        started = time.perf_counter()
        scores = predict_scores(model, frame, task)
        best = min(best, time.perf_counter() - started)
    truth = holdout[label].to_numpy()
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics": compute_metrics(task, truth, scores, sorted(spec.metrics)),
        "segments": _segment_metrics(spec, holdout, truth, scores),
        "model_bytes": size,
        "latency_ms_per_1000_rows": best * 1000 * 1000 / max(len(frame), 1),
    }


def _segment_metrics(spec: ModelPromotionSpec, holdout: pd.DataFrame, truth: Any, scores: Any) -> dict[str, Any]:
    from dagfoundry.models.scoring import compute_metrics

    result: dict[str, dict[str, dict[str, float]]] = {}
    task: Any = spec.task
    for segment in spec.segments:
        if segment.column not in holdout.columns:
            raise HoldoutProblem(f"segment column {segment.column!r} is not in the holdout; "
                                 f"it has {sorted(map(str, holdout.columns))}")
        groups = result.setdefault(segment.column, {})
        for value, index in sorted(holdout.groupby(segment.column, sort=True).indices.items(), key=lambda kv: str(kv[0])):
            entry = groups.setdefault(str(value), {"rows": float(len(index))})
            try:
                entry.update(compute_metrics(task, truth[index], scores[index], [segment.metric]))
            except ValueError:  # one class only in this segment: its ranking metric is undefined
                continue
    return result
