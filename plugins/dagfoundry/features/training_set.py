"""Point-in-time training sets: labels joined to the offline store as of each label's time.

For a label at time ``t`` with lag ``L`` the features come from the latest feature date
``d`` whose values were complete by ``t - L``, i.e. whose cutoff ``d + 1 day 00:00 UTC`` is at
or before ``t - L``. Using the feature date of ``t`` itself would leak the rest of that day.
The entity's row of that date is joined; when the entity has no row on that date (no
activity within the view's TTL) its features are null. Labels keep their order and columns.

The join runs in pandas: ``merge_asof`` picks each label's feature date among the
partitions, then an exact merge on entity keys and feature date picks the row. It suits
training sets that fit in memory; larger ones should do the same two steps in Spark.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.compute import PART_FILE
from dagfoundry.features.definition import FeatureViewDefinition

if TYPE_CHECKING:
    import pandas as pd


class TrainingSetError(DagfoundryError):
    """Labels cannot be joined to the offline store (missing columns, bad label times)."""


def _feature_dates(offline_dir: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in offline_dir.glob("feature_date=*") if (p / PART_FILE).is_file())


def _read_partitions(offline_dir: Path, dates: list[str], columns: list[str]) -> pd.DataFrame:
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for feature_date in dates:
        frame = pq.read_table(offline_dir / f"feature_date={feature_date}" / PART_FILE, columns=columns).to_pandas()
        frames.append(frame.assign(feature_date=feature_date))
    if not frames:
        return pd.DataFrame(columns=[*columns, "feature_date"])
    return pd.concat(frames, ignore_index=True)


def build_training_set(
    labels: pd.DataFrame,
    offline_dir: str | Path,
    defn: FeatureViewDefinition,
    *,
    label_time_column: str = "label_time",
    lag_days: int = 0,
) -> pd.DataFrame:
    """Return ``labels`` with the view's features as of each label time (point in time correct).

    :param labels: one row per example: the view's entity key columns, ``label_time_column``
        and any label columns (naive times are taken as UTC)
    :param offline_dir: the view's offline store, ``<lake_root>/features/<view>``
    :param defn: the feature view
    :param label_time_column: the column holding when the label was observed
    :param lag_days: extra days between the features' cutoff and the label time (how stale
        features are at prediction time in production)
    :return: labels plus ``feature_date`` (None when no partition was complete in time) and
        one column per feature, in the labels' order
    :raises TrainingSetError: when columns are missing or clash with features, times are
        null or the lag is negative
    """
    return join_point_in_time(
        labels,
        offline_dir,
        view=defn.name,
        entity_keys=defn.entity_keys,
        feature_names=[f.name for f in defn.features],
        label_time_column=label_time_column,
        lag_days=lag_days,
    )


def join_point_in_time(
    labels: pd.DataFrame,
    offline_dir: str | Path,
    *,
    view: str,
    entity_keys: tuple[str, ...] | list[str],
    feature_names: list[str],
    label_time_column: str = "label_time",
    lag_days: int = 0,
) -> pd.DataFrame:
    """Join ``feature_names`` of a view's offline store to ``labels``, as :func:`build_training_set` does.

    For callers that know a view by name and columns only (a retraining spec).
    """
    import pandas as pd

    keys = list(entity_keys)
    absent = [c for c in [*keys, label_time_column] if c not in labels.columns]
    if absent:
        raise TrainingSetError(f"labels for feature view {view!r} lack column(s) {absent}")
    if lag_days < 0:
        raise TrainingSetError(f"lag_days must be >= 0, got {lag_days}")
    times = pd.to_datetime(labels[label_time_column], utc=True)
    if times.isna().any():
        raise TrainingSetError(f"labels for feature view {view!r} have null {label_time_column!r} values")

    offline_dir = Path(offline_dir)
    dates = _feature_dates(offline_dir)
    available = pd.DataFrame({"feature_date": dates})
    available["_available_at"] = pd.to_datetime(available["feature_date"], utc=True) + pd.Timedelta(days=1)
    asof = pd.DataFrame({"_row": range(len(labels)), "_bound": times.to_numpy() - pd.Timedelta(days=lag_days)})
    asof["_bound"] = pd.to_datetime(asof["_bound"], utc=True)
    asof = pd.merge_asof(
        asof.sort_values("_bound"),
        available.astype({"_available_at": asof["_bound"].dtype}),
        left_on="_bound",
        right_on="_available_at",
        direction="backward",
    ).sort_values("_row")

    needed = sorted(asof["feature_date"].dropna().unique())
    features = _read_partitions(offline_dir, needed, [*keys, *feature_names])
    base = labels.reset_index(drop=True).assign(feature_date=asof["feature_date"].to_numpy())
    clashes = [c for c in [*feature_names, "feature_date"] if c in labels.columns]
    if clashes:
        raise TrainingSetError(f"labels for feature view {view!r} already have column(s) {clashes}")
    for key in keys:
        if len(features) and features[key].dtype != base[key].dtype:
            features[key] = features[key].astype(base[key].dtype)
    joined = base.merge(features, on=[*keys, "feature_date"], how="left", validate="many_to_one")
    joined.index = labels.index
    return joined
