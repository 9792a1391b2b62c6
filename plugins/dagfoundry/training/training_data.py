"""The training set of a run: labels in the window, features as of each label, a time split.

The window ends at the run's cutoff (its data interval end, or when it was due) and covers
``window_days`` before it; the holdout is its last ``holdout_days``. Labels are sorted by
label time then entity keys before anything else, so the same cutoff gives the same rows
in the same order, and so the same digest.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.errors import TrainingDataError
from dagfoundry.features.compute import offline_path

if TYPE_CHECKING:
    import pyarrow as pa

    from dagfoundry.specs.retraining import LabelSourceSpec, RetrainingSpec


@dataclass(frozen=True)
class TrainingSet:
    """A built training set, split in time (Arrow tables: pandas only at the trainer).

    :param train: rows with label time before the holdout start
    :param holdout: rows of the last ``holdout_days``
    :param feature_dates: first and last feature date joined (``YYYY-MM-DD..YYYY-MM-DD``), or ``none``
    :param label_source_version: digest of the labels read (the source's version for this run)
    :param engine: the engine that ran the point-in-time joins (``duckdb`` or ``spark``)
    """

    train: pa.Table
    holdout: pa.Table
    feature_dates: str
    label_source_version: str
    engine: str


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_labels(source: LabelSourceSpec, lake_root: Path, start: dt.datetime, end: dt.datetime) -> pa.Table:
    """Read the label source's labels in ``[start, end)`` with DuckDB, sorted by label time then keys.

    The label time becomes a UTC timestamp (naive values are taken as UTC); only the columns
    the spec names are kept.

    :raises TrainingDataError: the table is missing, the query fails, or columns are missing
    """
    import duckdb

    where = source.table or "the label query"
    needed = [*source.entity_keys, source.label_time, source.label_column, *source.features]
    time = _quoted(source.label_time)
    try:
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            if source.table:
                folder = lake_root / source.table
                if not folder.exists():
                    raise TrainingDataError(f"label source {source.table!r}: no table at {folder}")
                relation = con.sql(
                    "SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
                    params=[str(folder / "**" / "*.parquet")],
                )
            else:
                relation = con.sql((source.sql or "").replace("{lake}", str(lake_root)))
            missing = [c for c in needed if c not in relation.columns]
            if missing:
                raise TrainingDataError(
                    f"label source {where} lacks column(s) {missing}; it has {sorted(map(str, relation.columns))}"
                )
            relation.create_view("label_source")
            columns = ", ".join(
                f"CAST({time} AS TIMESTAMPTZ) AS {time}" if c == source.label_time else _quoted(c) for c in needed
            )
            # Every column in the order, so duplicate (time, keys) rows still sort the same way each run.
            order = ", ".join(_quoted(c) for c in [source.label_time, *source.entity_keys,
                                                   source.label_column, *source.features])
            return con.sql(
                f"SELECT {columns} FROM label_source WHERE CAST({time} AS TIMESTAMPTZ) >= ?"
                f" AND CAST({time} AS TIMESTAMPTZ) < ? ORDER BY {order}",
                params=[start, end],
            ).to_arrow_table()
    except duckdb.Error as exc:
        raise TrainingDataError(f"label source {where}: {exc}") from None


def build_training_set(spec: RetrainingSpec, lake_root: Path, cutoff: dt.datetime) -> TrainingSet:
    """Return the run's training set: labels of the window joined point in time, split in time.

    Labels, joins and split stay in Arrow; nothing is copied into pandas here. The joins run
    on the spec's ``engine``; with Spark, the labels are staged under the lake's
    ``_staging/training/<dag>/`` (the cluster reads them there) and removed after each join.

    :param cutoff: end of the window (exclusive, UTC); labels at or after it are not used
    """
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from dagfoundry.features.training_set import TrainingSetError, join_point_in_time
    from dagfoundry.lake.publish import STAGING_DIR
    from dagfoundry.models.datasets import frame_digest
    from dagfoundry.spark_submit import submit_options

    source = spec.training.label_source
    end = cutoff.astimezone(dt.UTC) if cutoff.tzinfo else cutoff.replace(tzinfo=dt.UTC)
    start = end - dt.timedelta(days=spec.training.window_days)
    labels = read_labels(source, lake_root, start, end)
    # The labels alone (keys, time, label) are small next to the features: hashed as a frame.
    version = frame_digest(labels.to_pandas())
    frame = labels
    used_dates: set[str] = set()
    staging = lake_root / STAGING_DIR / "training" / spec.name
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
                engine=spec.engine,
                duckdb=spec.duckdb.settings(),
                spark=submit_options(spec.spark),
                staging=staging / f"{ref.view}-{uuid.uuid4().hex[:8]}",
            )
        except (TrainingSetError, duckdb.Error, KeyError, ValueError) as exc:
            raise TrainingDataError(f"feature view {ref.view!r}: {exc}") from None
        used_dates.update(d.isoformat() for d in pc.unique(frame.column("feature_date")).to_pylist() if d is not None)
        frame = frame.drop_columns(["feature_date"])
    frame = frame.select([*source.entity_keys, source.label_time, *spec.feature_columns, source.label_column])
    holdout_start = end - dt.timedelta(days=spec.split.holdout_days)
    in_holdout = pc.greater_equal(frame.column(source.label_time), pa.scalar(holdout_start, pa.timestamp("us", "UTC")))
    train, holdout = frame.filter(pc.invert(in_holdout)), frame.filter(in_holdout)
    for name, part in (("training", train), ("holdout", holdout)):
        if part.num_rows == 0:
            raise TrainingDataError(
                f"the {name} set is empty: no labels in [{start:%Y-%m-%d}, {end:%Y-%m-%d}) "
                f"{'before' if name == 'training' else 'after'} {holdout_start:%Y-%m-%d}"
            )
    dates = f"{min(used_dates)}..{max(used_dates)}" if used_dates else "none"
    return TrainingSet(train=train, holdout=holdout, feature_dates=dates, label_source_version=version,
                       engine=spec.engine)
