"""Missing source partitions: fail with a clear message, skip the date, or tell a sensor."""

from __future__ import annotations

import datetime as dt

import pytest

from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, WindowAggregate
from dagfoundry.features.source_readiness import (
    SourcePartitionMissingError,
    missing_source_partitions,
    plan_feature_dates,
)


def make_source_dirs(root, days):
    for day in days:
        (root / f"event_date={day.isoformat()}").mkdir(parents=True)


def view(path, on_missing="fail", window=3) -> FeatureViewDefinition:
    return FeatureViewDefinition(
        name="v",
        entity_keys=("k",),
        sources=(SourceTable("orders", str(path), "ts", "event_date", on_missing),),
        features=(WindowAggregate("n", "count", None, window),),
        ttl_days=1,
    )


def days(first: str, count: int) -> list[dt.date]:
    start = dt.date.fromisoformat(first)
    return [start + dt.timedelta(days=n) for n in range(count)]


def test_dates_with_all_partitions_are_ready_and_history_start_is_not_missing(tmp_path):
    make_source_dirs(tmp_path, days("2024-01-01", 5))
    defn = view(tmp_path)
    assert missing_source_partitions(defn, "2024-01-01") == []
    assert plan_feature_dates(defn, "2024-01-01", "2024-01-05").dates == tuple(
        d.isoformat() for d in days("2024-01-01", 5)
    )


def test_a_gap_is_missing_for_every_date_whose_lookback_covers_it(tmp_path):
    make_source_dirs(tmp_path, [d for d in days("2024-01-01", 8) if d != dt.date(2024, 1, 4)])
    defn = view(tmp_path, window=3)
    gap = str(tmp_path / "event_date=2024-01-04")
    assert missing_source_partitions(defn, "2024-01-03") == []
    for day in ("2024-01-04", "2024-01-05", "2024-01-06"):
        assert missing_source_partitions(defn, day) == [gap]
    assert missing_source_partitions(defn, "2024-01-07") == []


def test_skip_leaves_out_exactly_the_dates_missing_data(tmp_path):
    make_source_dirs(tmp_path, [d for d in days("2024-01-01", 8) if d != dt.date(2024, 1, 4)])
    plan = plan_feature_dates(view(tmp_path, "skip"), "2024-01-02", "2024-01-08")
    assert plan.skipped == ("2024-01-04", "2024-01-05", "2024-01-06")
    assert plan.dates == ("2024-01-02", "2024-01-03", "2024-01-07", "2024-01-08")


@pytest.mark.parametrize("on_missing", ["fail", "wait"])
def test_fail_and_wait_raise_naming_the_table_and_the_date(tmp_path, on_missing):
    make_source_dirs(tmp_path, days("2024-01-01", 3))
    with pytest.raises(SourcePartitionMissingError) as caught:
        plan_feature_dates(view(tmp_path, on_missing), "2024-01-02", "2024-01-04")
    message = str(caught.value)
    assert "feature date 2024-01-04" in message
    assert "source 'orders'" in message and str(tmp_path) in message
    assert "event_date=2024-01-04" in message and on_missing in message


def test_a_late_partition_makes_the_date_ready_once_it_lands(tmp_path):
    make_source_dirs(tmp_path, days("2024-01-01", 3))
    defn = view(tmp_path, "wait")
    assert missing_source_partitions(defn, "2024-01-04") == [str(tmp_path / "event_date=2024-01-04")]
    make_source_dirs(tmp_path, [dt.date(2024, 1, 4)])
    assert missing_source_partitions(defn, "2024-01-04") == []


def test_an_absent_unpartitioned_source_is_missing(tmp_path):
    defn = FeatureViewDefinition(
        name="v",
        entity_keys=("k",),
        sources=(SourceTable("orders", str(tmp_path / "nowhere"), "ts"),),
        features=(WindowAggregate("n", "count", None, 1),),
    )
    assert missing_source_partitions(defn, "2024-01-01") == [str(tmp_path / "nowhere")]


def test_a_reversed_range_is_refused(tmp_path):
    make_source_dirs(tmp_path, days("2024-01-01", 3))
    with pytest.raises(ValueError, match="end 2024-01-01 is before its start 2024-01-03"):
        plan_feature_dates(view(tmp_path), "2024-01-03", "2024-01-01")
