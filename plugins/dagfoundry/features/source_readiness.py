"""Which source partitions a feature date needs, and what to do when some are absent.

A source partitioned by event date (``<partition_column>=YYYY-MM-DD``) must hold every
partition in the feature date's lookback (``lookback_days`` ending at the date), counted
from the table's first partition on, so the start of a table's history is not "missing".
A source without a partition column is ready when its directory exists.

Standard library only: a sensor can poke :func:`missing_source_partitions` at parse-light cost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.definition import FeatureViewDefinition, SourceTable


class SourcePartitionMissingError(DagfoundryError):
    """A feature date needs source partitions that do not exist (and ``on_missing`` is not ``skip``)."""


@dataclass(frozen=True)
class FeatureDatePlan:
    """The feature dates a run computes, and those it leaves out.

    :param dates: ISO dates to compute, ascending
    :param skipped: ISO dates left out because a ``skip`` source lacks partitions
    """

    dates: tuple[str, ...]
    skipped: tuple[str, ...]


def feature_dates(start: str | dt.date, end: str | dt.date) -> list[dt.date]:
    """Return every date from ``start`` to ``end``, both included.

    :raises ValueError: when ``end`` is before ``start``
    """
    first, last = _as_date(start), _as_date(end)
    if last < first:
        raise ValueError(f"feature date range end {last} is before its start {first}")
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _as_date(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value[:10])


def existing_partitions(source: SourceTable) -> set[dt.date]:
    """Return the dates of the source's existing ``<partition_column>=YYYY-MM-DD`` directories."""
    root = Path(source.path)
    prefix = f"{source.partition_column}="
    found: set[dt.date] = set()
    if not root.is_dir():
        return found
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(prefix):
            try:
                found.add(dt.date.fromisoformat(child.name[len(prefix) :]))
            except ValueError:
                continue
    return found


def _missing_for_source(
    defn: FeatureViewDefinition, source: SourceTable, feature_date: dt.date, existing: set[dt.date] | None
) -> list[str]:
    root = Path(source.path)
    if source.partition_column is None:
        return [] if root.exists() else [str(root)]
    existing = existing_partitions(source) if existing is None else existing
    if not existing:
        return [str(root / f"{source.partition_column}={feature_date.isoformat()}")]
    first_needed = max(feature_date - dt.timedelta(days=defn.lookback_days - 1), min(existing))
    missing = []
    day = first_needed
    while day <= feature_date:
        if day not in existing:
            missing.append(str(root / f"{source.partition_column}={day.isoformat()}"))
        day += dt.timedelta(days=1)
    return missing


def missing_source_partitions(defn: FeatureViewDefinition, feature_date: str | dt.date) -> list[str]:
    """Return the paths of source partitions ``feature_date`` needs that do not exist.

    An empty list means every source is ready. Sensors poke this for ``on_missing: wait``.

    :param defn: the feature view
    :param feature_date: the feature date (``YYYY-MM-DD`` or a date)
    """
    day = _as_date(feature_date)
    return [path for source in defn.sources for path in _missing_for_source(defn, source, day, None)]


def plan_feature_dates(defn: FeatureViewDefinition, start: str | dt.date, end: str | dt.date) -> FeatureDatePlan:
    """Decide which dates of ``[start, end]`` to compute, applying each source's ``on_missing``.

    :raises SourcePartitionMissingError: for the first date missing a partition of a
        ``fail`` or ``wait`` source, naming the table, the date and the partitions
    """
    existing = {s.name: existing_partitions(s) for s in defn.sources if s.partition_column}
    dates: list[str] = []
    skipped: list[str] = []
    for day in feature_dates(start, end):
        skip = False
        for source in defn.sources:
            missing = _missing_for_source(defn, source, day, existing.get(source.name))
            if not missing:
                continue
            if source.on_missing == "skip":
                skip = True
                continue
            raise SourcePartitionMissingError(
                f"feature view {defn.name!r}: feature date {day} needs {len(missing)} missing partition(s) of "
                f"source {source.name!r} ({source.path}): {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}; on_missing is {source.on_missing!r} "
                "(load the partitions and re-run, or set on_missing: skip)"
            )
        (skipped if skip else dates).append(day.isoformat())
    return FeatureDatePlan(dates=tuple(dates), skipped=tuple(skipped))
