"""Configuration of one feature view, as plain frozen dataclasses (standard library only).

A DAG factory builds a :class:`FeatureViewDefinition` from a validated spec; the compute
task serialises it to JSON with :meth:`FeatureViewDefinition.to_json` for the Spark
application, which cannot import this package.

Semantics (see ``docs/features.md``):

* feature date ``d`` holds values as of the END of day ``d`` (UTC): only events with
  ``event_time < d + 1 day 00:00 UTC`` count;
* a trailing window of ``W`` days covers ``[cutoff - W days, cutoff)``;
* the partition of date ``d`` holds one row per entity that has at least one event (in any
  source, filters ignored) in the trailing ``ttl_days`` window.

Filter and SQL expressions are Spark SQL written by spec authors. They run inside Spark
unchanged, so they are trusted code and must be reviewed like any SQL. Names (view, keys,
columns, features) are validated strictly here because they become paths and identifiers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dagfoundry.errors import DagfoundryError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "min", "max", "last", "count_distinct")
ON_MISSING = ("fail", "skip", "wait")
ONLINE_KINDS = ("sqlite", "redis")
#: Column names every offline partition reserves.
RESERVED_COLUMNS = ("feature_date",)
MAX_WINDOW_DAYS = 3660


class FeatureDefinitionError(DagfoundryError):
    """A feature view definition is invalid (names the view, the field and the reason)."""


def _check_identifier(view: str, where: str, value: object) -> None:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}: {value!r} is not a valid name "
            "(letters, digits and underscores, not starting with a digit, at most 128 characters)"
        )


def _check_sql_snippet(view: str, where: str, value: object) -> None:
    # Snippets are trusted, but a ';' or an empty string is always a mistake.
    if not isinstance(value, str) or not value.strip():
        raise FeatureDefinitionError(f"feature view {view!r}: {where}: must be a non-empty Spark SQL expression")
    if ";" in value:
        raise FeatureDefinitionError(f"feature view {view!r}: {where}: {value!r} must be one expression, without ';'")


@dataclass(frozen=True)
class SourceTable:
    """One lake table the features are computed from.

    :param name: short name of the source, used by :attr:`WindowAggregate.source`
    :param path: directory of the Parquet table (Hive-style partitions allowed)
    :param event_time_column: the event time (timestamp, or a string Spark casts to one),
        interpreted in UTC
    :param partition_column: when the table is partitioned by event date
        (``<partition_column>=YYYY-MM-DD`` directories), used to prune reads and to check
        that the partitions a feature date needs exist
    :param on_missing: what a feature date whose source partitions are absent does:
        ``fail`` (raise, naming table and date), ``skip`` (leave the date out), ``wait``
        (the DAG waits with a sensor on :func:`~dagfoundry.features.source_readiness.missing_source_partitions`;
        at compute time it behaves like ``fail``)
    """

    name: str
    path: str
    event_time_column: str
    partition_column: str | None = None
    on_missing: Literal["fail", "skip", "wait"] = "fail"


@dataclass(frozen=True)
class WindowAggregate:
    """A feature aggregated over a trailing window of days.

    :param name: the feature's column name
    :param function: one of :data:`AGGREGATE_FUNCTIONS`; ``last`` is the value of the
        latest event (by event time, ties broken by the greater value) whose value is not null
    :param column: the source column aggregated; None with ``count`` counts events
    :param window_days: window length in days (1 = the feature date itself)
    :param filter_sql: optional Spark SQL predicate over source columns; only matching
        events count (trusted code)
    :param expression: instead of ``column``, a Spark SQL expression over source columns
        (trusted code), e.g. ``price * quantity``
    :param source: the :attr:`SourceTable.name`; may be empty when there is one source
    """

    name: str
    function: str
    column: str | None
    window_days: int
    filter_sql: str | None = None
    expression: str | None = None
    source: str = ""


@dataclass(frozen=True)
class SqlFeature:
    """A feature derived by a Spark SQL expression over the view's other features.

    The expression is evaluated on the feature row after the window aggregates; it may use
    the entity keys, ``feature_date`` and every window feature (trusted code), e.g.
    ``amount_sum_7d / nullif(orders_7d, 0)``.
    """

    name: str
    expression: str


@dataclass(frozen=True)
class OnlineStoreTarget:
    """Where online values go.

    :param kind: ``sqlite`` (file, the default) or ``redis``
    :param sqlite_path: the SQLite file for ``sqlite``
    :param redis_conn_id: Airflow connection holding the Redis host, port, password, db
    :param key_prefix: prefix of every Redis key
    """

    kind: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = ""
    redis_conn_id: str = "redis_default"
    key_prefix: str = "dagfoundry:features:"


@dataclass(frozen=True)
class FeatureViewDefinition:
    """A feature view: entities, sources, features, TTL and online target.

    :param name: view name; also the directory ``features/<name>`` in the lake
    :param entity_keys: entity key columns, present in every source
    :param sources: one or more source tables; several sources are joined on the entity
        keys and the feature date (full outer), each aggregate reading its own source
    :param features: window aggregates and SQL features, in output column order
    :param ttl_days: which entities a date holds (activity within this many days) and how
        long an online value is served after its feature date
    :param online: online store target
    """

    name: str
    entity_keys: tuple[str, ...]
    sources: tuple[SourceTable, ...]
    features: tuple[WindowAggregate | SqlFeature, ...]
    ttl_days: int = 30
    online: OnlineStoreTarget = field(default_factory=OnlineStoreTarget)

    def __post_init__(self) -> None:
        validate_definition(self)

    @property
    def window_aggregates(self) -> tuple[WindowAggregate, ...]:
        return tuple(f for f in self.features if isinstance(f, WindowAggregate))

    @property
    def lookback_days(self) -> int:
        """Days of events one feature date needs, the date included."""
        return max([self.ttl_days, *(f.window_days for f in self.window_aggregates)])

    def source_of(self, aggregate: WindowAggregate) -> SourceTable:
        """Return the source an aggregate reads."""
        if not aggregate.source:
            return self.sources[0]
        return next(s for s in self.sources if s.name == aggregate.source)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (feature kinds tagged with ``kind``)."""
        return {
            "name": self.name,
            "entity_keys": list(self.entity_keys),
            "sources": [vars(s).copy() for s in self.sources],
            "features": [
                {"kind": "window" if isinstance(f, WindowAggregate) else "sql", **vars(f)} for f in self.features
            ],
            "ttl_days": self.ttl_days,
            "online": vars(self.online).copy(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureViewDefinition:
        """Build a definition from :meth:`to_dict` output; raise on unknown fields."""
        try:
            features: list[WindowAggregate | SqlFeature] = []
            for item in data["features"]:
                item = dict(item)
                kind = item.pop("kind")
                features.append(WindowAggregate(**item) if kind == "window" else SqlFeature(**item))
            return cls(
                name=data["name"],
                entity_keys=tuple(data["entity_keys"]),
                sources=tuple(SourceTable(**s) for s in data["sources"]),
                features=tuple(features),
                ttl_days=data.get("ttl_days", 30),
                online=OnlineStoreTarget(**data.get("online", {})),
            )
        except (KeyError, TypeError) as exc:
            raise FeatureDefinitionError(f"feature view definition {data.get('name')!r} is malformed: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> FeatureViewDefinition:
        return cls.from_dict(json.loads(text))


def validate_definition(defn: FeatureViewDefinition) -> None:
    """Raise :class:`FeatureDefinitionError` on the first problem found."""
    view = defn.name
    _check_identifier(view, "name", view)
    if not defn.entity_keys:
        raise FeatureDefinitionError(f"feature view {view!r}: entity_keys: at least one key column is required")
    for key in defn.entity_keys:
        _check_identifier(view, "entity_keys", key)
    if not isinstance(defn.ttl_days, int) or not 1 <= defn.ttl_days <= MAX_WINDOW_DAYS:
        raise FeatureDefinitionError(f"feature view {view!r}: ttl_days: {defn.ttl_days!r} must be 1..{MAX_WINDOW_DAYS}")
    _validate_sources(defn)
    _validate_features(defn)
    if defn.online.kind not in ONLINE_KINDS:
        raise FeatureDefinitionError(
            f"feature view {view!r}: online.kind: {defn.online.kind!r} is not one of {ONLINE_KINDS}"
        )


def _validate_sources(defn: FeatureViewDefinition) -> None:
    view = defn.name
    if not defn.sources:
        raise FeatureDefinitionError(f"feature view {view!r}: sources: at least one source table is required")
    names = [s.name for s in defn.sources]
    if len(set(names)) != len(names):
        raise FeatureDefinitionError(f"feature view {view!r}: sources: names must be unique, got {names}")
    for i, source in enumerate(defn.sources):
        where = f"sources[{i}]"
        _check_identifier(view, f"{where}.name", source.name)
        _check_identifier(view, f"{where}.event_time_column", source.event_time_column)
        if source.partition_column is not None:
            _check_identifier(view, f"{where}.partition_column", source.partition_column)
        if not source.path:
            raise FeatureDefinitionError(f"feature view {view!r}: {where}.path: must not be empty")
        if source.on_missing not in ON_MISSING:
            raise FeatureDefinitionError(
                f"feature view {view!r}: {where}.on_missing: {source.on_missing!r} is not one of {ON_MISSING}"
            )


def _validate_features(defn: FeatureViewDefinition) -> None:
    view = defn.name
    if not defn.features:
        raise FeatureDefinitionError(f"feature view {view!r}: features: at least one feature is required")
    seen = set(defn.entity_keys) | set(RESERVED_COLUMNS)
    source_names = {s.name for s in defn.sources}
    for i, feature in enumerate(defn.features):
        where = f"features[{i}]"
        _check_identifier(view, f"{where}.name", feature.name)
        if feature.name.lower() in {s.lower() for s in seen}:
            raise FeatureDefinitionError(
                f"feature view {view!r}: {where}.name: {feature.name!r} clashes with an entity key, "
                "'feature_date' or an earlier feature"
            )
        seen.add(feature.name)
        if isinstance(feature, SqlFeature):
            _check_sql_snippet(view, f"{where}.expression", feature.expression)
        elif isinstance(feature, WindowAggregate):
            _validate_window_aggregate(view, where, feature, source_names, len(defn.sources))
        else:
            raise FeatureDefinitionError(
                f"feature view {view!r}: {where}: unknown feature type {type(feature).__name__}"
            )


def _validate_window_aggregate(
    view: str, where: str, feature: WindowAggregate, source_names: set[str], n_sources: int
) -> None:
    if feature.function not in AGGREGATE_FUNCTIONS:
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}.function: {feature.function!r} is not one of {AGGREGATE_FUNCTIONS}"
        )
    if feature.column is not None and feature.expression is not None:
        raise FeatureDefinitionError(f"feature view {view!r}: {where}: give column or expression, not both")
    if feature.column is not None:
        _check_identifier(view, f"{where}.column", feature.column)
    elif feature.expression is not None:
        _check_sql_snippet(view, f"{where}.expression", feature.expression)
    elif feature.function != "count":
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}: {feature.function!r} needs a column or an expression"
        )
    if feature.filter_sql is not None:
        _check_sql_snippet(view, f"{where}.filter_sql", feature.filter_sql)
    if isinstance(feature.window_days, bool) or not isinstance(feature.window_days, int):
        raise FeatureDefinitionError(f"feature view {view!r}: {where}.window_days: must be an integer")
    if not 1 <= feature.window_days <= MAX_WINDOW_DAYS:
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}.window_days: {feature.window_days} must be 1..{MAX_WINDOW_DAYS}"
        )
    if feature.source and feature.source not in source_names:
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}.source: {feature.source!r} is not one of {sorted(source_names)}"
        )
    if not feature.source and n_sources > 1:
        raise FeatureDefinitionError(
            f"feature view {view!r}: {where}.source: required when the view has several sources"
        )
