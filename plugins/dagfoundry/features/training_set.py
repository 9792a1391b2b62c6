"""Point-in-time training sets: labels joined to the offline store as of each label's time.

For a label at time ``t`` with lag ``L`` the features come from the latest feature date
``d`` whose values were complete by ``t - L``, i.e. whose cutoff ``d + 1 day 00:00 UTC`` is at
or before ``t - L``. Using the feature date of ``t`` itself would leak the rest of that day.
The entity's row of that date is joined; when the entity has no row on that date (no
activity within the view's TTL) its features are null. Labels keep their order and columns.

The join is one query (:mod:`dagfoundry.features.point_in_time_sql`) run on either engine:
DuckDB in this process (``engine: duckdb``, the default) scans the labels in place as Arrow;
Spark (``engine: spark``) runs ``include/spark/training_set_join.py`` over the labels staged
as Parquet. Only the row number, the label time and the keys go to the engine; the engine
returns the date and features per row number, and the labels' own columns never leave
Arrow. :func:`join_point_in_time` takes and returns Arrow tables; :func:`build_training_set`
is the pandas form for callers that hold a frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.compute import PART_FILE
from dagfoundry.features.definition import FeatureViewDefinition
from dagfoundry.features.point_in_time_sql import ROW as _ROW
from dagfoundry.features.point_in_time_sql import point_in_time_query
from dagfoundry.lake.dialects import ENGINES, for_engine

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: The Spark application of the join (``include/spark/training_set_join.py``).
SPARK_APP = "training_set_join"


class TrainingSetError(DagfoundryError):
    """Labels cannot be joined to the offline store (missing columns, bad label times)."""


def _feature_dates(offline_dir: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in offline_dir.glob("feature_date=*") if (p / PART_FILE).is_file())


def _row_numbers(count: int) -> pa.Array:
    """Return 0..count-1 as an int64 array (from numpy: building it from a Python range costs seconds at 1M rows)."""
    import numpy as np
    import pyarrow as pa

    return pa.array(np.arange(count, dtype=np.int64))


def _join_on_duckdb(probe: pa.Table, query: str, files: list[Path], settings: Mapping[str, Any] | None,
                    work: Path) -> pa.Table:
    """Run the query (transpiled) in this process over the Arrow ``probe``, scanned in place."""
    from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect, sql_literal

    con = connect(DuckDBSettings.from_dict(settings), work)
    try:
        con.register("labels", probe)
        listed = ", ".join(sql_literal(f) for f in files)
        # The date comes from the Hive-style path as a DATE: joining on it is cheaper than on text.
        con.execute(
            f"CREATE TEMP VIEW features AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true, "
            "hive_types = {'feature_date': DATE}, union_by_name = true)"
        )
        # con.sql (a relation) hands DuckDB's result to Arrow without the extra copy of execute().
        return con.sql(for_engine(query, "duckdb")).to_arrow_table()
    finally:
        con.close()


def _join_on_spark(probe: pa.Table, query: str, offline_dir: Path, files: list[Path],
                   spark: Mapping[str, Any] | None, work: Path) -> pa.Table:
    """Stage ``probe`` as Parquet, run ``include/spark/training_set_join.py``, read its output back."""
    import json

    import pyarrow.parquet as pq

    from dagfoundry.spark_submit import submit_spark_app

    labels_file, output, job_file = work / "labels.parquet", work / "output", work / "job.json"
    pq.write_table(probe, labels_file)
    job_file.write_text(json.dumps({
        "query": query, "labels": str(labels_file), "offline_dir": str(offline_dir),
        "feature_files": [str(f) for f in files], "output": str(output),
    }), encoding="utf-8")
    submit_spark_app(SPARK_APP, ["--job", str(job_file)], **dict(spark or {}))
    return pq.read_table(output)


def _in_label_order(found: pa.Table, count: int) -> pa.Table:
    """Return ``found`` (one row per label, any order) in row-number order, without the row column.

    Each row number appears once, so the order is a scatter (O(n)), not a sort. Fields are
    nullable and carry no engine metadata, so both engines return the same schema.
    """
    import numpy as np
    import pyarrow as pa

    rows = found.column(_ROW).to_numpy()
    if found.num_rows != count or rows.size and (rows.min() < 0 or rows.max() >= count):
        raise TrainingSetError(f"the join returned {found.num_rows} rows for {count} labels")
    order = np.empty(count, dtype=np.int64)
    order[rows] = np.arange(count, dtype=np.int64)
    found = found.drop_columns([_ROW]).take(pa.array(order))
    return found.cast(pa.schema([f.with_nullable(True) for f in found.schema])).replace_schema_metadata(None)


def _no_features(count: int, feature_names: list[str]) -> pa.Table:
    """Return the join's result when the store has no partition: every date and feature null."""
    import pyarrow as pa

    return pa.table({"feature_date": pa.nulls(count, pa.date32()),
                     **{c: pa.nulls(count, pa.null()) for c in feature_names}})


def join_features(
    probe: pa.Table,
    time_column: str,
    lag_days: int,
    offline_dir: Path,
    keys: list[str],
    feature_names: list[str],
    *,
    engine: str = "duckdb",
    duckdb: Mapping[str, Any] | None = None,
    spark: Mapping[str, Any] | None = None,
    staging: Path | None = None,
) -> pa.Table:
    """Return ``feature_date`` and the features of each row of ``probe``, in its order, computed on ``engine``.

    :param probe: the row number column ``_pit_row`` (0..n-1), ``time_column`` and ``keys``
    :param engine: ``duckdb`` (in this process, bounded by ``duckdb``) or ``spark`` (the
        application through the provider's spark-submit hook; ``spark`` holds
        :func:`~dagfoundry.spark_submit.submit_spark_app`'s ``conn_id``, ``conf``, ``driver_memory``)
    :param staging: a folder for this join's files (Spark reads the labels from it, so it must
        be visible to the cluster); a temporary folder when None. Removed afterwards.
    """
    import shutil
    import tempfile

    if engine not in ENGINES:
        raise TrainingSetError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    dates = _feature_dates(offline_dir)
    if not dates:
        return _no_features(probe.num_rows, feature_names)
    files = [offline_dir / f"feature_date={d}" / PART_FILE for d in dates]
    query = point_in_time_query(keys, feature_names, time_column, lag_days, dates)
    work = Path(tempfile.mkdtemp(prefix="dagfoundry-pit-")) if staging is None else staging
    work.mkdir(parents=True, exist_ok=True)
    try:
        if engine == "duckdb":
            found = _join_on_duckdb(probe, query, files, duckdb, work)
        else:
            found = _join_on_spark(probe, query, offline_dir, files, spark, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _in_label_order(found, probe.num_rows)


def build_training_set(
    labels: pd.DataFrame,
    offline_dir: str | Path,
    defn: FeatureViewDefinition,
    *,
    label_time_column: str = "label_time",
    lag_days: int = 0,
    **run: Any,
) -> pd.DataFrame:
    """Return ``labels`` with the view's features as of each label time (point in time correct).

    :param labels: one row per example: the view's entity key columns, ``label_time_column``
        and any label columns (naive times are taken as UTC)
    :param offline_dir: the view's offline store, ``<lake_root>/features/<view>``
    :param defn: the feature view
    :param label_time_column: the column holding when the label was observed
    :param lag_days: extra days between the features' cutoff and the label time (how stale
        features are at prediction time in production)
    :param run: ``engine``, ``duckdb``, ``spark``, ``staging`` as :func:`join_features` takes them
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
    # Only the keys and the time go to the engine; the label columns stay in the caller's frame untouched.
    probe = pa.table({_ROW: _row_numbers(len(labels)), label_time_column: pa.array(times),
                      **{k: pa.array(labels[k].to_numpy()) for k in keys}})
    added = join_features(probe, label_time_column, lag_days, Path(offline_dir), keys, feature_names, **run)
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
    **run: Any,
) -> pa.Table:
    """Join ``feature_names`` of a view's offline store to Arrow ``labels``, as :func:`build_training_set` does.

    For callers that know a view by name and columns only (a retraining spec, the benchmark).
    The labels stay in Arrow; the engine's columns are appended to them: no pandas copy.

    :param run: ``engine``, ``duckdb``, ``spark``, ``staging`` as :func:`join_features` takes them
    :return: the labels' columns, then ``feature_date`` (a date, null when no partition was
        complete in time) and the features, in the labels' order
    :raises TrainingSetError: as :func:`build_training_set`
    """

    keys = list(entity_keys)
    _check_columns(labels.column_names, view, keys, feature_names, label_time_column, lag_days)
    if labels.column(label_time_column).null_count:
        raise TrainingSetError(f"labels for feature view {view!r} have null {label_time_column!r} values")
    probe = labels.select([label_time_column, *dict.fromkeys(keys)]).append_column(_ROW, _row_numbers(labels.num_rows))
    added = join_features(probe, label_time_column, lag_days, Path(offline_dir), keys, feature_names, **run)
    for name, column in zip(added.column_names, added.columns, strict=True):
        labels = labels.append_column(name, column)
    return labels


def _check_columns(
    columns: list[str], view: str, keys: list[str], feature_names: list[str], time_column: str, lag_days: int
) -> None:
    absent = [c for c in [*keys, time_column] if c not in columns]
    if absent:
        raise TrainingSetError(f"labels for feature view {view!r} lack column(s) {absent}")
    if lag_days < 0:
        raise TrainingSetError(f"lag_days must be >= 0, got {lag_days}")
    clashes = [c for c in [*feature_names, "feature_date", _ROW] if c in columns]
    if clashes:
        raise TrainingSetError(f"labels for feature view {view!r} already have column(s) {clashes}")
