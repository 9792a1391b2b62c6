"""Copy the latest offline partition of a feature view into its online store.

Every live partition is complete (partitions are published atomically), so the latest
complete partition is the one with the greatest feature date. A DAG run materializes with
:func:`materialize_newest`: the store is written only when the latest partition is newer than
the date the store holds, or is that date and the run has just re-published it; a backfill
run of older dates leaves the store alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.compute import PART_FILE, offline_path
from dagfoundry.features.definition import FeatureViewDefinition
from dagfoundry.features.online_store import OnlineStore, open_online_store

log = logging.getLogger(__name__)


class NoOfflinePartitionError(DagfoundryError):
    """A feature view has no offline partition to materialize yet."""


def offline_feature_dates(lake_root: str | Path, view: str) -> list[str]:
    """Return the feature dates of the view's live offline partitions, ascending."""
    root = offline_path(lake_root, view)
    if not root.is_dir():
        return []
    return sorted(
        child.name.split("=", 1)[1]
        for child in root.iterdir()
        if child.name.startswith("feature_date=") and (child / PART_FILE).is_file()
    )


def latest_feature_date(lake_root: str | Path, view: str, *, at_or_before: str | None = None) -> str | None:
    """Return the latest live feature date (optionally at or before a date), or None."""
    dates = [d for d in offline_feature_dates(lake_root, view) if at_or_before is None or d <= at_or_before]
    return dates[-1] if dates else None


def materialize_partition(
    defn: FeatureViewDefinition, lake_root: str | Path, feature_date: str, store: OnlineStore
) -> dict[str, Any]:
    """Write one offline partition to the online store (older values never clobber newer ones).

    :return: ``{"view", "feature_date", "rows", "written"}`` (``written`` counts values that
        were created or replaced; the rest were older than what the store holds)
    """
    import pyarrow.parquet as pq

    part = offline_path(lake_root, defn.name) / f"feature_date={feature_date}" / PART_FILE
    if not part.is_file():
        raise NoOfflinePartitionError(f"feature view {defn.name!r} has no offline partition {feature_date} at {part}")
    table = pq.read_table(part)
    keys = list(defn.entity_keys)
    feature_names = [f.name for f in defn.features]
    rows = (
        ({k: record[k] for k in keys}, {f: record[f] for f in feature_names})
        for batch in table.to_batches(max_chunksize=10_000)
        for record in batch.to_pylist()
    )
    written = store.write(defn.name, feature_date, defn.ttl_days, rows)
    log.info("Materialized %s rows of %s %s (%s newer than stored)", table.num_rows, defn.name, feature_date, written)
    return {"view": defn.name, "feature_date": feature_date, "rows": table.num_rows, "written": written}


def materialize_latest(
    defn: FeatureViewDefinition, lake_root: str | Path, store: OnlineStore | None = None
) -> dict[str, Any]:
    """Materialize the view's latest live partition into ``store`` (the view's target by default).

    :raises NoOfflinePartitionError: when the view has no partition yet
    """
    latest = _latest_partition(defn, lake_root)
    store = store or open_online_store(defn.online)
    result = materialize_partition(defn, lake_root, latest, store)
    store.mark_materialized(defn.name, latest)
    return result


def materialize_newest(
    defn: FeatureViewDefinition,
    lake_root: str | Path,
    published: list[str],
    store: OnlineStore | None = None,
) -> dict[str, Any]:
    """Materialize the view's latest partition unless the store already holds it (or newer).

    :param published: the feature dates the run published (a re-run of the held date writes it again)
    :return: what :func:`materialize_partition` returns, or ``{"view", "feature_date", "rows": 0,
        "written": 0, "skipped": reason}`` when the store was left alone
    :raises NoOfflinePartitionError: when the run published dates but the view has no partition
    """
    if not published and latest_feature_date(lake_root, defn.name) is None:
        # A scheduled day without source data on a new view: nothing to serve yet, nothing wrong.
        reason = "the view has no offline partition yet and this run published nothing"
        log.info("Online store of %s left alone: %s", defn.name, reason)
        return {"view": defn.name, "feature_date": None, "rows": 0, "written": 0, "skipped": reason}
    latest = _latest_partition(defn, lake_root)
    store = store or open_online_store(defn.online)
    held = store.materialized_date(defn.name)
    if held is not None and (latest < held or (latest == held and latest not in published)):
        reason = f"the online store holds {held}; this run published {', '.join(published) or 'nothing'}"
        log.info("Online store of %s left alone: %s", defn.name, reason)
        return {"view": defn.name, "feature_date": held, "rows": 0, "written": 0, "skipped": reason}
    result = materialize_partition(defn, lake_root, latest, store)
    store.mark_materialized(defn.name, latest)
    return result


def _latest_partition(defn: FeatureViewDefinition, lake_root: str | Path) -> str:
    """Return the view's latest live feature date; raise ``NoOfflinePartitionError`` when it has none."""
    latest = latest_feature_date(lake_root, defn.name)
    if latest is None:
        raise NoOfflinePartitionError(
            f"feature view {defn.name!r} has no offline partition under {offline_path(lake_root, defn.name)}; "
            "run the feature computation first"
        )
    return latest
