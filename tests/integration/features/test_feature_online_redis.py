"""Redis online store (real Redis on 127.0.0.1:6379): compare-and-set on feature date, TTL."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagfoundry.features.compute import PART_FILE, offline_path
from dagfoundry.features.definition import FeatureViewDefinition, OnlineStoreTarget, SourceTable, WindowAggregate
from dagfoundry.features.materialize import materialize_latest, materialize_partition
from dagfoundry.features.online_store import RedisOnlineStore, encode_entity, get_online_features, open_online_store

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix():
    """A key prefix unique to this test; its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is required on 127.0.0.1:6379 for the online store tests and is not reachable: {exc}")
    value = f"dagfoundry-test:{uuid.uuid4().hex}:"
    yield value
    keys = list(client.scan_iter(match=f"{value}*"))
    if keys:
        client.delete(*keys)


def view(prefix: str, ttl_days: int = 30) -> FeatureViewDefinition:
    return FeatureViewDefinition(
        name="users",
        entity_keys=("user_id", "region"),
        sources=(SourceTable("events", "/unused", "ts"),),
        features=(WindowAggregate("clicks_7d", "count", None, 7), WindowAggregate("spend_7d", "sum", "spend", 7)),
        ttl_days=ttl_days,
        online=OnlineStoreTarget(kind="redis", redis_conn_id="redis_features_test", key_prefix=prefix),
    )


def write_partition(lake, feature_date: str, rows: list[tuple[int, str, int, float | None]]) -> None:
    frame = pd.DataFrame(rows, columns=["user_id", "region", "clicks_7d", "spend_7d"]).astype({"user_id": "int64"})
    directory = offline_path(lake, "users") / f"feature_date={feature_date}"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / PART_FILE)


def days_ago(n: int) -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=n)).isoformat()


def test_backfilled_older_date_never_clobbers_newer_redis_values(tmp_path, prefix, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_FEATURES_TEST", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 6379})
    )
    defn = view(prefix)
    newer, older = days_ago(1), days_ago(3)
    write_partition(tmp_path, older, [(1, "eu", 3, 10.5), (2, "us", 4, None), (3, "eu", 1, 2.0)])
    write_partition(tmp_path, newer, [(1, "eu", 9, 99.0), (2, "us", 8, 1.5)])

    store = open_online_store(defn.online)
    assert isinstance(store, RedisOnlineStore)
    assert materialize_latest(defn, tmp_path)["written"] == 2
    assert materialize_partition(defn, tmp_path, older, store)["written"] == 1  # only entity 3 was absent

    keys = [
        {"user_id": 1, "region": "eu"},
        {"region": "us", "user_id": "2"},
        {"user_id": 3, "region": "eu"},
        {"user_id": 4, "region": "eu"},
    ]
    served = get_online_features("users", keys, store=store)
    assert served[0] == {"user_id": 1, "region": "eu", "clicks_7d": 9, "spend_7d": 99.0, "feature_date": newer}
    assert served[1] == {"region": "us", "user_id": "2", "clicks_7d": 8, "spend_7d": 1.5, "feature_date": newer}
    assert served[2] == {"user_id": 3, "region": "eu", "clicks_7d": 1, "spend_7d": 2.0, "feature_date": older}
    assert served[3] is None


def test_redis_keys_expire_ttl_days_after_the_feature_date(tmp_path, prefix):
    import redis

    defn = view(prefix, ttl_days=5)
    store = RedisOnlineStore(REDIS_URL, key_prefix=prefix)
    write_partition(tmp_path, days_ago(1), [(1, "eu", 3, 10.5)])
    write_partition(tmp_path, days_ago(40), [(7, "eu", 2, 1.0)])
    materialize_partition(defn, tmp_path, days_ago(1), store)
    materialize_partition(defn, tmp_path, days_ago(40), store)

    client = redis.Redis.from_url(REDIS_URL)
    key = store.key("users", encode_entity({"user_id": 1, "region": "eu"}))
    expected = dt.datetime.combine(dt.date.fromisoformat(days_ago(1)), dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=6)
    assert abs(client.expiretime(key) - expected.timestamp()) < 2
    served = get_online_features("users", [{"user_id": 1, "region": "eu"}, {"user_id": 7, "region": "eu"}], store=store)
    assert served[0]["clicks_7d"] == 3
    assert served[1] is None  # 40 days old with a 5-day TTL: already expired


def test_a_same_date_rewrite_replaces_the_value(tmp_path, prefix):
    store = RedisOnlineStore(REDIS_URL, key_prefix=prefix, batch_size=2)
    rows = [({"user_id": n, "region": "eu"}, {"clicks_7d": n, "spend_7d": None}) for n in range(5)]
    assert store.write("users", days_ago(1), 30, rows) == 5
    corrected = [({"user_id": 0, "region": "eu"}, {"clicks_7d": 100, "spend_7d": 1.0})]
    assert store.write("users", days_ago(1), 30, corrected) == 1
    assert get_online_features("users", [{"user_id": 0, "region": "eu"}], store=store)[0]["clicks_7d"] == 100


def test_redis_holds_the_materialized_date_and_older_runs_write_nothing(tmp_path, prefix):
    import redis

    from dagfoundry.features.materialize import materialize_newest

    defn = view(prefix)
    store = RedisOnlineStore(REDIS_URL, key_prefix=prefix)
    newest, older = days_ago(1), days_ago(3)
    write_partition(tmp_path, older, [(1, "eu", 3, 10.5)])
    write_partition(tmp_path, newest, [(1, "eu", 9, 99.0), (2, "us", 8, 1.5)])
    assert materialize_newest(defn, tmp_path, [newest], store)["written"] == 2
    client = redis.Redis.from_url(REDIS_URL)
    assert client.get(store.view_key("users")) == newest.encode()

    # Delete a served value: if the backfill run wrote the newest partition again, it would come back.
    client.delete(store.key("users", encode_entity({"user_id": 2, "region": "us"})))
    result = materialize_newest(defn, tmp_path, [older], store)
    assert result["skipped"] and result["written"] == 0
    assert get_online_features("users", [{"user_id": 2, "region": "us"}], store=store) == [None]
    store.mark_materialized("users", older)
    assert store.materialized_date("users") == newest
