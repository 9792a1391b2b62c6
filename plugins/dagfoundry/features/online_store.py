"""Online stores: the latest feature values per entity, for model serving.

Every stored value carries its feature date. A write replaces a key's value only when its
feature date is the same or newer than the stored one, so materializing an older date (a
backfill) never clobbers a newer value. Each view also records the feature date it was last
materialized from (:meth:`OnlineStore.materialized_date`), so a run whose date is not newer
does not write at all (see :func:`dagfoundry.features.materialize.materialize_newest`). Values expire ``ttl_days`` after the end of their
feature date: Redis expires keys itself; SQLite filters on read.

Entity keys are encoded as JSON of ``[[column, str(value)], ...]`` sorted by column, so a
lookup with ``{"user_id": 7}`` and ``{"user_id": "7"}`` finds the same row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.definition import OnlineStoreTarget

#: One row to write: (entity key mapping, feature values mapping).
OnlineRow = tuple[Mapping[str, Any], Mapping[str, Any]]


class OnlineStoreError(DagfoundryError):
    """The online store cannot be reached or holds unreadable data."""


def encode_entity(keys: Mapping[str, Any]) -> str:
    """Return the canonical string of an entity key mapping."""
    return json.dumps([[column, str(keys[column])] for column in sorted(keys)], separators=(",", ":"))


def expires_at(feature_date: str, ttl_days: int) -> dt.datetime:
    """Return when a value of ``feature_date`` stops being served (UTC)."""
    cutoff = dt.datetime.combine(dt.date.fromisoformat(feature_date), dt.time(), tzinfo=dt.UTC)
    return cutoff + dt.timedelta(days=1 + ttl_days)


class OnlineStore(Protocol):
    """What materialization and lookups need from an online store."""

    def write(self, view: str, feature_date: str, ttl_days: int, rows: Iterable[OnlineRow]) -> int:
        """Write rows of one feature date; return how many replaced or created a value."""
        ...

    def read(
        self, view: str, keys: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
    ) -> list[dict[str, Any] | None]:
        """Return, for each key, ``{**features, "feature_date": ...}`` or None (absent or expired)."""
        ...

    def materialized_date(self, view: str) -> str | None:
        """Return the newest feature date the view was materialized from, or None."""
        ...

    def mark_materialized(self, view: str, feature_date: str) -> None:
        """Record that ``feature_date`` was materialized (an older date never replaces a newer one)."""
        ...


class SqliteOnlineStore:
    """Online store in one SQLite file (the embedded default).

    :param path: the database file; created with its table on first use
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self):
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS online_features ("
            " view TEXT NOT NULL, entity TEXT NOT NULL, feature_date TEXT NOT NULL,"
            " expires_at TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (view, entity))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS online_views (view TEXT PRIMARY KEY, feature_date TEXT NOT NULL)"
        )
        return conn

    def materialized_date(self, view: str) -> str | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT feature_date FROM online_views WHERE view = ?", (view,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def mark_materialized(self, view: str, feature_date: str) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT INTO online_views (view, feature_date) VALUES (?, ?)"
                    " ON CONFLICT (view) DO UPDATE SET feature_date = excluded.feature_date"
                    " WHERE excluded.feature_date > online_views.feature_date",
                    (view, feature_date),
                )
        finally:
            conn.close()

    def write(self, view: str, feature_date: str, ttl_days: int, rows: Iterable[OnlineRow]) -> int:
        expiry = expires_at(feature_date, ttl_days).isoformat()
        records = (
            (view, encode_entity(keys), feature_date, expiry, json.dumps(dict(values), default=str))
            for keys, values in rows
        )
        conn = self._connect()
        try:
            with conn:
                before = conn.total_changes
                # The WHERE clause is the no-clobber rule: an older date never replaces a newer one.
                conn.executemany(
                    "INSERT INTO online_features (view, entity, feature_date, expires_at, payload)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (view, entity) DO UPDATE SET feature_date = excluded.feature_date,"
                    " expires_at = excluded.expires_at, payload = excluded.payload"
                    " WHERE excluded.feature_date >= online_features.feature_date",
                    records,
                )
                return conn.total_changes - before
        finally:
            conn.close()

    def read(
        self, view: str, keys: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
    ) -> list[dict[str, Any] | None]:
        now_text = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat()
        encoded = [encode_entity(k) for k in keys]
        conn = self._connect()
        try:
            found: dict[str, tuple[str, str]] = {}
            for chunk_start in range(0, len(encoded), 500):
                chunk = encoded[chunk_start : chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                for entity, feature_date, payload in conn.execute(
                    f"SELECT entity, feature_date, payload FROM online_features"
                    f" WHERE view = ? AND expires_at > ? AND entity IN ({marks})",
                    [view, now_text, *chunk],
                ):
                    found[entity] = (feature_date, payload)
        finally:
            conn.close()
        return [{**json.loads(found[e][1]), "feature_date": found[e][0]} if e in found else None for e in encoded]


# Compare-and-set: keep the stored value when it has a newer feature date.
_CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'feature_date')
if current and current > ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'feature_date', ARGV[1], 'payload', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1
"""


# Keep the newest materialized date of a view.
_MARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and current >= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class RedisOnlineStore:
    """Online store in Redis: one hash per entity with ``feature_date`` and ``payload``.

    :param url: ``redis://[:password@]host:port/db`` (build it from an Airflow connection
        with :func:`open_online_store`; never hard-code secrets)
    :param key_prefix: prefix of every key, e.g. ``dagfoundry:features:``
    :param batch_size: rows per pipeline round trip
    """

    def __init__(self, url: str, key_prefix: str = "dagfoundry:features:", batch_size: int = 1000) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.batch_size = batch_size
        self._client_instance = None

    @property
    def _client(self):
        if self._client_instance is None:
            import redis

            self._client_instance = redis.Redis.from_url(self.url)
        return self._client_instance

    def key(self, view: str, encoded_entity: str) -> str:
        return f"{self.key_prefix}{view}:{encoded_entity}"

    def view_key(self, view: str) -> str:
        """Return the key of the view's materialized date (an encoded entity starts with '[': no clash)."""
        return f"{self.key_prefix}{view}:materialized_date"

    def materialized_date(self, view: str) -> str | None:
        value = self._client.get(self.view_key(view))
        return value.decode() if value is not None else None

    def mark_materialized(self, view: str, feature_date: str) -> None:
        self._client.register_script(_MARK_SCRIPT)(keys=[self.view_key(view)], args=[feature_date])

    def write(self, view: str, feature_date: str, ttl_days: int, rows: Iterable[OnlineRow]) -> int:
        expiry = str(int(expires_at(feature_date, ttl_days).timestamp()))
        script = self._client.register_script(_CAS_SCRIPT)
        written = 0
        pipe = self._client.pipeline(transaction=False)
        pending = 0
        for keys, values in rows:
            payload = json.dumps(dict(values), default=str)
            script(keys=[self.key(view, encode_entity(keys))], args=[feature_date, payload, expiry], client=pipe)
            pending += 1
            if pending >= self.batch_size:
                written += sum(int(r) for r in pipe.execute())
                pending = 0
        if pending:
            written += sum(int(r) for r in pipe.execute())
        return written

    def read(
        self, view: str, keys: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
    ) -> list[dict[str, Any] | None]:
        # Redis expires keys on its own clock; ``now`` is accepted for the protocol only.
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self.key(view, encode_entity(k)), "feature_date", "payload")
        results: list[dict[str, Any] | None] = []
        for feature_date, payload in pipe.execute():
            if feature_date is None or payload is None:
                results.append(None)
            else:
                results.append({**json.loads(payload), "feature_date": feature_date.decode()})
        return results


def redis_url_from_connection(conn_id: str) -> str:
    """Build a Redis URL from an Airflow connection (host, port, password, schema = db)."""
    from urllib.parse import quote

    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    auth = f":{quote(conn.password, safe='')}@" if conn.password else ""
    db = conn.schema or (conn.extra_dejson or {}).get("db", 0)
    return f"redis://{auth}{conn.host or '127.0.0.1'}:{conn.port or 6379}/{db}"


def open_online_store(target: OnlineStoreTarget) -> OnlineStore:
    """Return the online store a view's target names (Redis URL from an Airflow connection)."""
    if target.kind == "sqlite":
        if not target.sqlite_path:
            raise OnlineStoreError("online store target of kind 'sqlite' needs sqlite_path")
        return SqliteOnlineStore(target.sqlite_path)
    if target.kind == "redis":
        return RedisOnlineStore(redis_url_from_connection(target.redis_conn_id), key_prefix=target.key_prefix)
    raise OnlineStoreError(f"unknown online store kind {target.kind!r} (allowed: sqlite, redis)")


def get_online_features(
    view: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    store: OnlineStore,
    now: dt.datetime | None = None,
) -> list[dict[str, Any] | None]:
    """Return the latest served values of ``view`` for each entity key mapping.

    :param view: the feature view's name
    :param keys: one mapping per entity, e.g. ``[{"user_id": 7}]`` (all entity key columns)
    :param store: the online store (:func:`open_online_store` from the view's target)
    :param now: the clock for TTL checks (SQLite); now by default
    :return: per key, ``{**entity keys, **features, "feature_date": "YYYY-MM-DD"}`` or None
        when the entity is unknown or its value expired
    """
    values = store.read(view, keys, now=now)
    return [None if v is None else {**dict(k), **v} for k, v in zip(keys, values, strict=True)]
