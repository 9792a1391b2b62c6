"""The training set of a run: labels in the window, features as of each label, a time split.

The window ends at the run's cutoff (its data interval end, or when it was due) and covers
``window_days`` before it; the holdout is its last ``holdout_days``. Labels are sorted by
label time then entity keys before anything else, so the same cutoff gives the same rows
in the same order, and so the same digest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.errors import TrainingDataError
from dagfoundry.features.compute import offline_path

if TYPE_CHECKING:
    import pandas as pd

    from dagfoundry.specs.retraining import LabelSourceSpec, RetrainingSpec


@dataclass(frozen=True)
class TrainingSet:
    """A built training set, split in time.

    :param train: rows with label time before the holdout start
    :param holdout: rows of the last ``holdout_days``
    :param feature_dates: first and last feature date joined (``YYYY-MM-DD..YYYY-MM-DD``), or ``none``
    :param label_source_version: digest of the labels read (the source's version for this run)
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    feature_dates: str
    label_source_version: str


def read_labels(source: LabelSourceSpec, lake_root: Path) -> pd.DataFrame:
    """Read the label source with DuckDB (a Parquet table under the lake, or a query).

    :raises TrainingDataError: the table is missing, the query fails, or columns are missing
    """
    import duckdb

    where = source.table or "the label query"
    try:
        with duckdb.connect() as con:
            if source.table:
                folder = lake_root / source.table
                if not folder.exists():
                    raise TrainingDataError(f"label source {source.table!r}: no table at {folder}")
                frame = con.sql(
                    "SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
                    params=[str(folder / "**" / "*.parquet")],
                ).df()
            else:
                frame = con.sql((source.sql or "").replace("{lake}", str(lake_root))).df()
    except duckdb.Error as exc:
        raise TrainingDataError(f"label source {where}: {exc}") from None
    needed = [*source.entity_keys, source.label_time, source.label_column, *source.features]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"label source {where} lacks column(s) {missing}; it has {sorted(map(str, frame.columns))}"
        )
    return frame[needed]


def build_training_set(spec: RetrainingSpec, lake_root: Path, cutoff: dt.datetime) -> TrainingSet:
    """Return the run's training set: labels of the window joined point in time, split in time.

    :param cutoff: end of the window (exclusive, UTC); labels at or after it are not used
    """
    import pandas as pd

    from dagfoundry.features.training_set import TrainingSetError, join_point_in_time
    from dagfoundry.models.datasets import frame_digest

    source = spec.training.label_source
    labels = read_labels(source, lake_root)
    times = pd.to_datetime(labels[source.label_time], utc=True)
    end = pd.Timestamp(cutoff).tz_convert("UTC") if pd.Timestamp(cutoff).tzinfo else pd.Timestamp(cutoff, tz="UTC")
    start = end - pd.Timedelta(days=spec.training.window_days)
    labels = labels.assign(**{source.label_time: times})
    labels = labels[(times >= start) & (times < end)]
    labels = labels.sort_values([source.label_time, *source.entity_keys], kind="stable").reset_index(drop=True)
    version = frame_digest(labels)
    frame = labels
    used_dates: list[str] = []
    for ref in spec.training.feature_views:
        try:
            frame = join_point_in_time(
                frame,
                offline_path(lake_root, ref.view),
                view=ref.view,
                entity_keys=source.entity_keys,
                feature_names=list(ref.features),
                label_time_column=source.label_time,
                lag_days=spec.training.lag_days,
            )
        except (TrainingSetError, KeyError, ValueError) as exc:
            raise TrainingDataError(f"feature view {ref.view!r}: {exc}") from None
        used_dates += [d for d in frame.pop("feature_date").dropna().unique()]
    columns = [*source.entity_keys, source.label_time, *spec.feature_columns, source.label_column]
    frame = frame[columns]
    holdout_start = end - pd.Timedelta(days=spec.split.holdout_days)
    in_holdout = frame[source.label_time] >= holdout_start
    train, holdout = frame[~in_holdout].reset_index(drop=True), frame[in_holdout].reset_index(drop=True)
    for name, part in (("training", train), ("holdout", holdout)):
        if part.empty:
            raise TrainingDataError(
                f"the {name} set is empty: no labels in [{start:%Y-%m-%d}, {end:%Y-%m-%d}) "
                f"{'before' if name == 'training' else 'after'} {holdout_start:%Y-%m-%d}"
            )
    dates = f"{min(used_dates)}..{max(used_dates)}" if used_dates else "none"
    return TrainingSet(train=train, holdout=holdout, feature_dates=dates, label_source_version=version)
