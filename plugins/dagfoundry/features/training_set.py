"""Point-in-time training sets: labels joined to the offline store as of each label's time.

For a label at time ``t`` with lag ``L`` the features come from the latest feature date
``d`` whose values were complete by ``t - L``, i.e. whose cutoff ``d + 1 day 00:00 UTC`` is at
or before ``t - L``. Using the feature date of ``t`` itself would leak the rest of that day.
The entity's row of that date is joined; when the entity has no row on that date (no
activity within the view's TTL) its features are null. Labels keep their order and columns.

The join runs in DuckDB: an ASOF join picks each label's feature date among the
partitions, then a hash join on entity keys and feature date picks the row from the
Parquet files. pandas only holds the labels and the result; the label columns pass through
untouched (DuckDB sees the keys and the time bound only).
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


def _join_in_duckdb(
    probe: pd.DataFrame, offline_dir: Path, dates: list[str], keys: list[str], feature_names: list[str]
) -> pd.DataFrame:
    """Return ``feature_date`` and the features per probe row (in ``_row`` order), joined by DuckDB.

    An ASOF join picks each row's feature date (latest availability at or before its bound);
    a hash join on keys and date picks the entity's row. DuckDB bounds the memory, not pandas.
    """
    import duckdb
    import pandas as pd

    files = [str(offline_dir / f"feature_date={d}" / PART_FILE) for d in dates]
    selected = ", ".join(f'f."{c}"' for c in feature_names)
    on_keys = " AND ".join(f'f."{k}" = p."{k}"' for k in keys)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("probe", probe)
        con.register("available", pd.DataFrame({
            "feature_date": dates,
            "_available_at": pd.to_datetime(pd.Series(dates, dtype="object")) + pd.Timedelta(days=1),
        }))
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                "CREATE TEMP VIEW features AS SELECT *, regexp_extract(filename, 'feature_date=([0-9-]+)', 1)"
                f" AS _feature_date FROM read_parquet([{listed}], filename = true, union_by_name = true)"
            )
        else:
            nulls = ", ".join(f'NULL AS "{c}"' for c in [*keys, *feature_names])
            con.execute(f"CREATE TEMP VIEW features AS SELECT {nulls}, NULL::VARCHAR AS _feature_date WHERE false")
        result = con.execute(
            f"""
            WITH chosen AS (
                SELECT p.*, a.feature_date FROM probe p
                ASOF LEFT JOIN available a ON p._bound >= a._available_at
            )
            SELECT p._row, p.feature_date, {selected} FROM chosen p
            LEFT JOIN features f ON {on_keys} AND f._feature_date = p.feature_date
            ORDER BY p._row
            """
        ).df()
    return result.drop(columns=["_row"]).reset_index(drop=True)


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

    clashes = [c for c in [*feature_names, "feature_date"] if c in labels.columns]
    if clashes:
        raise TrainingSetError(f"labels for feature view {view!r} already have column(s) {clashes}")
    offline_dir = Path(offline_dir)
    dates = _feature_dates(offline_dir)
    bounds = (times - pd.Timedelta(days=lag_days)).dt.tz_convert("UTC").dt.tz_localize(None)
    probe = pd.DataFrame({"_row": range(len(labels)), "_bound": bounds.to_numpy()})
    for key in keys:
        probe[key] = labels[key].to_numpy()
    found = _join_in_duckdb(probe, offline_dir, dates, keys, feature_names)
    base = labels.reset_index(drop=True)
    joined = pd.concat([base, found], axis=1)
    joined.index = labels.index
    return joined
