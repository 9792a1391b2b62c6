"""Spec of the ``feature_backfill`` kind: point-in-time-correct daily features, offline and online."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation, StrictModel
from dagfoundry.specs.types import ConnId, Identifier

if TYPE_CHECKING:
    from dagfoundry.features.definition import FeatureViewDefinition

#: Engine field names that differ from the spec's keys.
_SPEC_KEYS = {"event_time_column": "event_time", "filter_sql": "filter", "path": "table"}
_ENGINE_WHERE = re.compile(r"^feature view '[^']*': ([a-z_]+)(?:\[(\d+)\])?(?:\.([a-z_]+))?: (.*)$", re.S)


def _located(message: str) -> RuleViolation:
    """Point an engine validation message at the spec key it is about."""
    match = _ENGINE_WHERE.match(message)
    if not match:
        return RuleViolation(("features",), message)
    section, index, field, text = match.groups()
    key: tuple[str | int, ...] = (section,)
    if index is not None:
        key += (int(index),)
    if field:
        key += (_SPEC_KEYS.get(field, field),)
    return RuleViolation(key, text)


LakePath = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_./=\-]+$")]


class FeatureSourceSpec(StrictModel):
    """A lake table the features read."""

    name: Identifier = Field(description="Short name, used by features' `source`.")
    table: LakePath = Field(description="Table folder, relative to the lake root (or absolute).")
    event_time: Identifier = Field(description="Event-time column (UTC).")
    partition_column: Identifier | None = Field(
        default=None, description="Set when the table is partitioned by event date (<col>=YYYY-MM-DD)."
    )
    on_missing: Literal["fail", "skip", "wait"] = Field(
        default="fail", description="A feature date whose source partitions are absent: fail, skip it, or wait."
    )


class WindowFeatureSpec(StrictModel):
    """An aggregation over a trailing window of days."""

    name: Identifier
    function: Literal["count", "sum", "avg", "min", "max", "last", "count_distinct"]
    column: Identifier | None = Field(default=None, description="Aggregated column (count without one counts events).")
    expression: str | None = Field(default=None, description="Spark SQL over source columns, instead of column.")
    window_days: int = Field(ge=1, le=3660, description="Window length in days (1 = the feature date itself).")
    filter: str | None = Field(default=None, description="Spark SQL predicate: only matching events count.")
    source: Identifier | None = Field(default=None, description="Source name; needed with several sources.")


class SqlFeatureSpec(StrictModel):
    """A feature computed from the row's other features."""

    name: Identifier
    sql: str = Field(min_length=1, description="Spark SQL over entity keys, feature_date and window features.")


class OnlineSpec(StrictModel):
    """Where the latest complete partition is served from."""

    store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str | None = Field(default=None, description="SQLite file; default <lake>/online/features.sqlite.")
    redis_conn_id: ConnId = Field(default="redis_default", description="Airflow connection of the Redis server.")
    key_prefix: str = Field(default="dagfoundry:features:", min_length=1)


class FeatureBackfillSpec(DagSpec):
    """Compute daily features point-in-time correct, backfillable, and serve the latest online."""

    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "start": ParamDeclaration(None, "string", "First feature date (YYYY-MM-DD) of a chunked backfill; empty = normal run."),
        "end": ParamDeclaration(None, "string", "Last feature date (YYYY-MM-DD, included) of a chunked backfill."),
        "chunk_days": ParamDeclaration(90, "integer", "Feature dates computed by one Spark job in a chunked backfill."),
    }

    kind: Literal["feature_backfill"]
    view: Identifier | None = Field(default=None, description="Feature view name; default: the DAG name.")
    entity_keys: tuple[Identifier, ...] = Field(min_length=1)
    sources: tuple[FeatureSourceSpec, ...] = Field(min_length=1)
    features: tuple[WindowFeatureSpec | SqlFeatureSpec, ...] = Field(min_length=1)
    ttl_days: int = Field(default=30, ge=1, le=3660, description="Entities active within this many days; online TTL.")
    online: OnlineSpec = Field(default_factory=OnlineSpec)
    spark_conn_id: ConnId = Field(default="spark_local")

    @model_validator(mode="after")
    def _definition_is_valid(self) -> FeatureBackfillSpec:
        from dagfoundry.features.definition import FeatureDefinitionError

        if self.schedule is None:
            raise RuleViolation(("schedule",), "feature views need a schedule: a cron expression or source Assets")
        try:
            self.definition("/lake")
        except FeatureDefinitionError as exc:
            raise _located(str(exc)) from None
        return self

    @property
    def view_name(self) -> str:
        return self.view or self.name

    def definition(self, lake_root: str) -> FeatureViewDefinition:
        """Return the engine's definition of this view, with source paths under ``lake_root``."""
        from pathlib import Path

        from dagfoundry.features.definition import (
            FeatureViewDefinition,
            OnlineStoreTarget,
            SourceTable,
            SqlFeature,
            WindowAggregate,
        )

        sources = tuple(
            SourceTable(
                name=s.name,
                path=str(Path(lake_root) / s.table),
                event_time_column=s.event_time,
                partition_column=s.partition_column,
                on_missing=s.on_missing,
            )
            for s in self.sources
        )
        features = tuple(
            SqlFeature(name=f.name, expression=f.sql)
            if isinstance(f, SqlFeatureSpec)
            else WindowAggregate(
                name=f.name,
                function=f.function,
                column=f.column,
                window_days=f.window_days,
                filter_sql=f.filter,
                expression=f.expression,
                source=f.source or "",
            )
            for f in self.features
        )
        online = OnlineStoreTarget(
            kind=self.online.store,
            sqlite_path=self.online.sqlite_path or str(Path(lake_root) / "online" / "features.sqlite"),
            redis_conn_id=self.online.redis_conn_id,
            key_prefix=self.online.key_prefix,
        )
        return FeatureViewDefinition(
            name=self.view_name,
            entity_keys=self.entity_keys,
            sources=sources,
            features=features,
            ttl_days=self.ttl_days,
            online=online,
        )
