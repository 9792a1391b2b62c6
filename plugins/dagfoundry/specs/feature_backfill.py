"""Spec of the ``feature_backfill`` kind: point-in-time-correct daily features, offline and online."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from dagfoundry.assets import feature_view_asset_name
from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation, StrictModel
from dagfoundry.specs.engine import ENGINE_DESCRIPTION, DuckDBSpec, Engine
from dagfoundry.specs.spark import SparkSpec, moved_spark_conn_id
from dagfoundry.specs.types import ConnId, Identifier

if TYPE_CHECKING:
    from dagfoundry.features.definition import FeatureViewDefinition

#: Words of Spark SQL that are not column names (for the unknown-name check of SQL features).
_SQL_WORDS = frozenset(
    "and or not null is in case when then else end as cast true false between like rlike distinct interval "
    "int integer bigint smallint tinyint double float decimal string date timestamp boolean "
    "day days hour hours minute minutes second seconds month months year years week weeks".split()
)
_SQL_NAME = re.compile(r"""'(?:[^']|'')*'|"(?:[^"])*"|`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*)(\s*\()?|\d[\w.]*""")


def _names_in_sql(sql: str) -> list[str]:
    """Return the column names a Spark SQL expression uses (not functions, keywords or literals)."""
    names = []
    for match in _SQL_NAME.finditer(sql):
        quoted, bare, call = match.groups()
        if quoted:
            names.append(quoted)
        elif bare and not call and bare.lower() not in _SQL_WORDS:
            names.append(bare)
    return names


def _one_expression(sql: str | None, key: tuple[str | int, ...]) -> None:
    if sql is not None and ";" in sql:
        raise RuleViolation(key, f"{sql!r} must be one expression, without ';'")


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


def _feature_type(value: object) -> str:
    """A feature with ``sql`` is a SQL feature; any other is a window aggregate (one error list, not two)."""
    if isinstance(value, dict):
        return "sql" if "sql" in value else "window"
    return "sql" if isinstance(value, SqlFeatureSpec) else "window"


#: A feature: a window aggregate or, when it has ``sql``, a SQL feature.
FeatureSpec = Annotated[
    Annotated[WindowFeatureSpec, Tag("window")] | Annotated[SqlFeatureSpec, Tag("sql")],
    Discriminator(_feature_type),
]


class OnlineSpec(StrictModel):
    """Where the latest complete partition is served from."""

    store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str | None = Field(default=None, description="SQLite file; default <lake>/online/features.sqlite.")
    redis_conn_id: ConnId = Field(default="redis_default", description="Airflow connection of the Redis server.")
    key_prefix: str = Field(default="dagfoundry:features:", min_length=1)


class FeatureBackfillSpec(DagSpec):
    """Compute daily features point-in-time correct, backfillable, and serve the latest online."""

    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "start": ParamDeclaration(
            None, "string", "First feature date of a chunked backfill; empty = a normal run.", format="date"
        ),
        "end": ParamDeclaration(
            None, "string", "Last feature date of a chunked backfill (included; on or after start).", format="date"
        ),
        "chunk_days": ParamDeclaration(90, "integer", "Feature dates computed by one job in a chunked backfill."),
    }

    kind: Literal["feature_backfill"]
    view: Identifier | None = Field(default=None, description="Feature view name; default: the DAG name.")
    entity_keys: tuple[Identifier, ...] = Field(min_length=1)
    sources: tuple[FeatureSourceSpec, ...] = Field(min_length=1)
    features: tuple[FeatureSpec, ...] = Field(
        min_length=1, description="Window aggregates (function, window_days) and SQL features (sql)."
    )
    ttl_days: int = Field(default=30, ge=1, le=3660, description="Entities active within this many days; online TTL.")
    online: OnlineSpec = Field(default_factory=OnlineSpec)
    engine: Engine = Field(default="duckdb", description=ENGINE_DESCRIPTION)
    duckdb: DuckDBSpec = Field(default_factory=DuckDBSpec, description="Bounds of the job on the embedded engine.")
    spark: SparkSpec = Field(default_factory=SparkSpec, description="How the feature job runs with engine: spark.")

    _moved_spark_conn_id = model_validator(mode="before")(moved_spark_conn_id)

    @model_validator(mode="after")
    def _definition_is_valid(self) -> FeatureBackfillSpec:
        if self.schedule is None:
            raise RuleViolation(("schedule",), "feature views need a schedule: a cron expression or source Assets")
        if self.timezone != "UTC":
            raise RuleViolation(("timezone",), "feature dates are UTC days: a feature view's schedule runs in UTC")
        self._check_sources()
        self._check_features()
        self._check_backfill_params()
        return self

    def _check_backfill_params(self) -> None:
        import datetime as dt

        dates = {}
        for key in ("start", "end"):
            value = self.params.get(key)
            if value is None:
                continue
            try:
                dates[key] = dt.date.fromisoformat(value)
            except ValueError:
                raise RuleViolation(("params", key), f"{value!r} is not a date: write YYYY-MM-DD") from None
        if len(dates) == 1:
            raise RuleViolation(("params", next(iter(dates))), "give both start and end, or neither")
        if dates and dates["end"] < dates["start"]:
            raise RuleViolation(("params", "end"), f"{self.params['end']} is before start {self.params['start']}")

    def _check_sources(self) -> None:
        names = [s.name for s in self.sources]
        for index, source in enumerate(self.sources):
            if source.name in names[:index]:
                raise RuleViolation(("sources", index, "name"), f"source {source.name!r} is listed twice")
            if source.on_missing == "wait" and source.partition_column is None:
                raise RuleViolation(
                    ("sources", index, "on_missing"),
                    "'wait' watches date partitions: set partition_column, or use on_missing: fail | skip",
                )

    def _check_features(self) -> None:
        sources = [s.name for s in self.sources]
        known = {k.lower() for k in self.entity_keys} | {"feature_date"}
        written: list[str] = []
        for index, feature in enumerate(self.features):
            where: tuple[str | int, ...] = ("features", index)
            if feature.name.lower() in known | {w.lower() for w in written}:
                raise RuleViolation(
                    (*where, "name"), f"{feature.name!r} clashes with an entity key, 'feature_date' or an earlier feature"
                )
            if isinstance(feature, SqlFeatureSpec):
                _one_expression(feature.sql, (*where, "sql"))
                self._check_sql_names(feature, where, written)
            else:
                _check_window(feature, where, sources)
            written.append(feature.name)

    def _check_sql_names(self, feature: SqlFeatureSpec, where: tuple[str | int, ...], earlier: list[str]) -> None:
        usable = [*self.entity_keys, "feature_date", *earlier]
        for name in _names_in_sql(feature.sql):
            if name.lower() not in {u.lower() for u in usable}:
                close = difflib.get_close_matches(name, usable, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"usable: {', '.join(usable)}"
                raise RuleViolation(
                    (*where, "sql"), f"{name!r} is not an entity key, feature_date or an earlier feature; {hint}"
                )

    @property
    def view_name(self) -> str:
        return self.view or self.name

    def produced_assets(self) -> list[str]:
        """Return the Assets this spec's DAG emits."""
        return [feature_view_asset_name(self.view_name)]

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


def _check_window(feature: WindowFeatureSpec, where: tuple[str | int, ...], sources: list[str]) -> None:
    if feature.column is not None and feature.expression is not None:
        raise RuleViolation((*where, "expression"), "give column or expression, not both")
    if feature.column is None and feature.expression is None and feature.function != "count":
        raise RuleViolation((*where, "function"), f"{feature.function!r} needs a column or an expression")
    _one_expression(feature.expression, (*where, "expression"))
    _one_expression(feature.filter, (*where, "filter"))
    if feature.source is not None and feature.source not in sources:
        close = difflib.get_close_matches(feature.source, sources, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"sources: {', '.join(sources)}"
        raise RuleViolation((*where, "source"), f"{feature.source!r} is not a source of this view; {hint}")
    if feature.source is None and len(sources) > 1:
        raise RuleViolation((*where, "source"), f"required with several sources: one of {', '.join(sources)}")
