"""SQLite online store and materialization: latest values, no clobbering by backfills, TTL."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.features.compute import PART_FILE, offline_path
from dagfoundry.features.definition import FeatureViewDefinition, OnlineStoreTarget, SourceTable, WindowAggregate
from dagfoundry.features.materialize import NoOfflinePartitionError, materialize_latest, materialize_partition
from dagfoundry.features.online_store import SqliteOnlineStore, get_online_features

VIEW = FeatureViewDefinition(
    name="users",
    entity_keys=("user_id",),
    sources=(SourceTable("events", "/unused", "ts"),),
    features=(WindowAggregate("clicks_7d", "count", None, 7), WindowAggregate("last_page", "last", "page", 7)),
    ttl_days=3,
)
NOW = dt.datetime(2024, 5, 11, 12, tzinfo=dt.UTC)


def write_partition(lake, feature_date: str, rows: list[tuple[int, int, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["user_id", "clicks_7d", "last_page"]).astype(
        {"user_id": "int64", "clicks_7d": "int64"}
    )
    directory = offline_path(lake, VIEW.name) / f"feature_date={feature_date}"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / PART_FILE)


@pytest.fixture
def lake(tmp_path):
    write_partition(tmp_path, "2024-05-08", [(1, 3, "home"), (2, 5, "cart"), (3, 1, "faq")])
    write_partition(tmp_path, "2024-05-10", [(1, 7, "checkout"), (2, 6, "home")])
    return tmp_path


def test_latest_partition_is_served(lake, tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    result = materialize_latest(VIEW, lake, store)
    assert result == {"view": "users", "feature_date": "2024-05-10", "rows": 2, "written": 2}
    served = get_online_features("users", [{"user_id": 1}, {"user_id": "2"}, {"user_id": 9}], store=store, now=NOW)
    assert served == [
        {"user_id": 1, "clicks_7d": 7, "last_page": "checkout", "feature_date": "2024-05-10"},
        {"user_id": "2", "clicks_7d": 6, "last_page": "home", "feature_date": "2024-05-10"},
        None,
    ]


def test_an_older_date_never_clobbers_a_newer_value(lake, tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    materialize_latest(VIEW, lake, store)
    backfill = materialize_partition(VIEW, lake, "2024-05-08", store)
    # Only user 3, absent from the newer date, takes the older value.
    assert backfill["written"] == 1
    served = get_online_features("users", [{"user_id": 1}, {"user_id": 3}], store=store, now=NOW)
    assert served[0]["feature_date"] == "2024-05-10" and served[0]["clicks_7d"] == 7
    assert served[1] == {"user_id": 3, "clicks_7d": 1, "last_page": "faq", "feature_date": "2024-05-08"}


def test_rematerializing_the_same_date_is_idempotent(lake, tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    materialize_latest(VIEW, lake, store)
    first = get_online_features("users", [{"user_id": 1}, {"user_id": 2}], store=store, now=NOW)
    materialize_latest(VIEW, lake, store)
    assert get_online_features("users", [{"user_id": 1}, {"user_id": 2}], store=store, now=NOW) == first


def test_values_expire_ttl_days_after_their_feature_date(lake, tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    materialize_latest(VIEW, lake, store)
    # Feature date 2024-05-10 (cutoff 05-11 00:00) with ttl 3 days is served until 05-14 00:00.
    just_before = dt.datetime(2024, 5, 13, 23, 59, tzinfo=dt.UTC)
    at_expiry = dt.datetime(2024, 5, 14, tzinfo=dt.UTC)
    assert get_online_features("users", [{"user_id": 1}], store=store, now=just_before)[0] is not None
    assert get_online_features("users", [{"user_id": 1}], store=store, now=at_expiry) == [None]


def test_views_do_not_see_each_other(lake, tmp_path):
    store = SqliteOnlineStore(tmp_path / "online.db")
    materialize_latest(VIEW, lake, store)
    assert get_online_features("other_view", [{"user_id": 1}], store=store, now=NOW) == [None]


def test_materialize_uses_the_views_target_by_default(lake, tmp_path):
    view = dataclasses.replace(VIEW, online=OnlineStoreTarget(kind="sqlite", sqlite_path=str(tmp_path / "t.db")))
    materialize_latest(view, lake)
    assert get_online_features("users", [{"user_id": 2}], store=SqliteOnlineStore(tmp_path / "t.db"), now=NOW)[0]


def test_a_view_without_partitions_says_to_compute_first(tmp_path):
    with pytest.raises(NoOfflinePartitionError, match="run the feature computation first"):
        materialize_latest(VIEW, tmp_path, SqliteOnlineStore(tmp_path / "online.db"))


class CountingStore(SqliteOnlineStore):
    """The SQLite store, counting the rows each write offers (to see that a run left it alone)."""

    offered = 0

    def write(self, view, feature_date, ttl_days, rows):
        rows = list(rows)
        self.offered += len(rows)
        return super().write(view, feature_date, ttl_days, rows)


def test_backfill_runs_leave_the_online_store_alone(lake, tmp_path):
    from dagfoundry.features.materialize import materialize_newest

    store = CountingStore(tmp_path / "online.db")
    assert materialize_newest(VIEW, lake, ["2024-05-10"], store)["written"] == 2
    assert store.materialized_date("users") == "2024-05-10"
    offered = store.offered
    for backfilled in (["2024-05-08"], []):  # an older day's run, a run that published nothing
        result = materialize_newest(VIEW, lake, backfilled, store)
        assert result["skipped"] and result["feature_date"] == "2024-05-10"
    assert store.offered == offered, "no row was written again"
    assert materialize_newest(VIEW, lake, ["2024-05-10"], store)["written"] == 2, "a re-run of the held date rewrites it"


def test_a_newer_partition_is_materialized_and_recorded(lake, tmp_path):
    from dagfoundry.features.materialize import materialize_newest

    store = SqliteOnlineStore(tmp_path / "online.db")
    materialize_newest(VIEW, lake, ["2024-05-10"], store)
    write_partition(lake, "2024-05-11", [(1, 9, "home")])
    result = materialize_newest(VIEW, lake, ["2024-05-11"], store)
    assert (result["feature_date"], result["written"]) == ("2024-05-11", 1)
    store.mark_materialized("users", "2024-05-09")
    assert store.materialized_date("users") == "2024-05-11", "an older mark never replaces a newer one"


def test_a_run_that_published_nothing_on_a_new_view_skips_and_one_that_published_needs_a_partition(tmp_path):
    from dagfoundry.features.materialize import materialize_newest

    empty_lake, store = tmp_path / "lake", SqliteOnlineStore(tmp_path / "online.db")
    # The scheduled run of a day without source data, before any backfill: no failure, no write.
    result = materialize_newest(VIEW, empty_lake, [], store)
    assert result["skipped"] and result["written"] == 0 and store.materialized_date("users") is None
    with pytest.raises(NoOfflinePartitionError, match="'users' has no offline partition"):
        materialize_newest(VIEW, empty_lake, ["2024-05-10"], store)
