"""Point-in-time training sets: labels joined to the offline store as of each label's time.

For a label at time ``t`` with lag ``L`` the features come from the latest feature date
``d`` whose values were complete by ``t - L``, i.e. whose cutoff ``d + 1 day 00:00 UTC`` is at
or before ``t - L``. Using the feature date of ``t`` itself would leak the rest of that day.
The entity's row of that date is joined; when the entity has no row on that date (no
activity within the view's TTL) its features are null. Labels keep their order and columns.

The join runs in DuckDB: an ASOF join picks each label's feature date among the
partitions, then a hash join on entity keys and feature date picks the row from the
Parquet files. :func:`join_point_in_time` takes and returns Arrow tables, so the labels
and the result stay in Arrow (DuckDB scans the labels in place); :func:`build_training_set`
is the pandas form for callers that hold a frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.compute import PART_FILE
from dagfoundry.features.definition import FeatureViewDefinition

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: Column names the join adds to the labels for its own use (row order, time bound).
_ROW, _BOUND = "_pit_row", "_pit_bound"


class TrainingSetError(DagfoundryError):
    """Labels cannot be joined to the offline store (missing columns, bad label times)."""


def _feature_dates(offline_dir: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in offline_dir.glob("feature_date=*") if (p / PART_FILE).is_file())


def _row_numbers(count: int) -> pa.Array:
    """Return 0..count-1 as an int64 array (from numpy: building it from a Python range costs seconds at 1M rows)."""
    import numpy as np
    import pyarrow as pa

    return pa.array(np.arange(count, dtype=np.int64))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _join_in_duckdb(
    labels: pa.Table, time_column: str, lag_days: int, offline_dir: Path, keys: list[str], feature_names: list[str]
) -> pa.Table:
    """Return ``labels`` (which carry a row-number column) plus ``feature_date`` and the features, in row order.

    ``feature_date`` is a date (null when no partition was complete in time).

    An ASOF join picks each row's feature date (latest availability at or before its bound);
    a hash join on keys and date picks the entity's row. DuckDB bounds the memory.
    """
    import duckdb

    dates = _feature_dates(offline_dir)
    files = [str(offline_dir / f"feature_date={d}" / PART_FILE) for d in dates]
    selected = ", ".join(f"f.{_quoted(c)}" for c in feature_names)
    on_keys = " AND ".join(f"f.{_quoted(k)} = p.{_quoted(k)}" for k in keys)
    bound = f"CAST({_quoted(time_column)} AS TIMESTAMPTZ)" + (f" - INTERVAL ({int(lag_days)}) DAY" if lag_days else "")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("labels", labels)
        con.execute(
            "CREATE TEMP TABLE available AS SELECT CAST(d AS DATE) AS _date,"
            " CAST(CAST(d AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ) AS _available_at FROM unnest(?::VARCHAR[]) t(d)",
            [dates],
        )
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            # The date comes from the Hive-style path as a DATE: joining on it is cheaper than on text.
            con.execute(
                "CREATE TEMP VIEW features AS SELECT * RENAME (feature_date AS _date) FROM read_parquet("
                f"[{listed}], hive_partitioning = true, hive_types = {{'feature_date': DATE}}, union_by_name = true)"
            )
        else:
            nulls = ", ".join(f"NULL AS {_quoted(c)}" for c in [*keys, *feature_names])
            con.execute(f"CREATE TEMP VIEW features AS SELECT {nulls}, NULL::DATE AS _date WHERE false")
        # con.sql (a relation) hands DuckDB's result to Arrow without the extra copy of execute().
        return con.sql(
            f"""
            WITH probe AS (SELECT *, {bound} AS {_BOUND} FROM labels), chosen AS (
                SELECT p.*, a._date FROM probe p
                ASOF LEFT JOIN available a ON p.{_BOUND} >= a._available_at
            )
            SELECT p.* EXCLUDE ({_BOUND}, _date), p._date AS feature_date, {selected}
            FROM chosen p LEFT JOIN features f ON {on_keys} AND f._date = p._date
            ORDER BY p.{_ROW}
            """
        ).to_arrow_table()


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
        one column per feature, in the labels' order and with the labels' index
    :raises TrainingSetError: when columns are missing or clash with features, times are
        null or the lag is negative
    """
    import pandas as pd
    import pyarrow as pa

    keys = list(defn.entity_keys)
    feature_names = [f.name for f in defn.features]
    _check_columns(list(labels.columns), defn.name, keys, feature_names, label_time_column, lag_days)
    times = pd.to_datetime(labels[label_time_column], utc=True)
    if times.isna().any():
        raise TrainingSetError(f"labels for feature view {defn.name!r} have null {label_time_column!r} values")
    # Only the keys and the time go to DuckDB; the label columns stay in the caller's frame untouched.
    probe = pa.table({_ROW: _row_numbers(len(labels)), label_time_column: pa.array(times),
                      **{k: pa.array(labels[k].to_numpy()) for k in keys}})
    found = _join_in_duckdb(probe, label_time_column, lag_days, Path(offline_dir), keys, feature_names)
    added = found.select(["feature_date", *feature_names])
    added = added.set_column(0, "feature_date", added.column("feature_date").cast(pa.string())).to_pandas()
    joined = pd.concat([labels.reset_index(drop=True), added], axis=1)
    joined.index = labels.index
    return joined


def join_point_in_time(
    labels: pa.Table,
    offline_dir: str | Path,
    *,
    view: str,
    entity_keys: tuple[str, ...] | list[str],
    feature_names: list[str],
    label_time_column: str = "label_time",
    lag_days: int = 0,
) -> pa.Table:
    """Join ``feature_names`` of a view's offline store to Arrow ``labels``, as :func:`build_training_set` does.

    For callers that know a view by name and columns only (a retraining spec, the benchmark).
    The labels are scanned in place and the result is built by DuckDB in Arrow: no pandas copy.

    :return: the labels' columns, then ``feature_date`` (a date, null when no partition was
        complete in time) and the features, in the labels' order
    :raises TrainingSetError: as :func:`build_training_set`
    """

    keys = list(entity_keys)
    _check_columns(labels.column_names, view, keys, feature_names, label_time_column, lag_days)
    if labels.column(label_time_column).null_count:
        raise TrainingSetError(f"labels for feature view {view!r} have null {label_time_column!r} values")
    numbered = labels.append_column(_ROW, _row_numbers(labels.num_rows))
    found = _join_in_duckdb(numbered, label_time_column, lag_days, Path(offline_dir), keys, feature_names)
    return found.drop_columns([_ROW])


def _check_columns(
    columns: list[str], view: str, keys: list[str], feature_names: list[str], time_column: str, lag_days: int
) -> None:
    absent = [c for c in [*keys, time_column] if c not in columns]
    if absent:
        raise TrainingSetError(f"labels for feature view {view!r} lack column(s) {absent}")
    if lag_days < 0:
        raise TrainingSetError(f"lag_days must be >= 0, got {lag_days}")
    clashes = [c for c in [*feature_names, "feature_date", _ROW, _BOUND] if c in columns]
    if clashes:
        raise TrainingSetError(f"labels for feature view {view!r} already have column(s) {clashes}")
