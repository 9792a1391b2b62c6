"""The feature job's one query: written in Spark SQL, generated for DuckDB by SQLGlot."""

from __future__ import annotations

import pytest

from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, SqlFeature, WindowAggregate
from dagfoundry.features.feature_sql import feature_query
from dagfoundry.lake.dialects import for_engine

VIEW = FeatureViewDefinition(
    name="users",
    entity_keys=("user_id",),
    sources=(SourceTable("events", "/lake/events", "ts", partition_column="event_date"),),
    features=(
        WindowAggregate("spend_7d", "sum", "amount", 7),
        WindowAggregate("items_7d", "sum", "quantity", 7),
        WindowAggregate("kinds_7d", "count_distinct", "kind", 7),
        SqlFeature("spend_per_item", "spend_7d / nullif(items_7d, 0)"),
    ),
    ttl_days=30,
).to_dict()
TYPES = {"spend_7d": "DOUBLE", "items_7d": "INT"}


def test_float_sums_are_folded_in_order_and_integer_sums_keep_their_type():
    sql = feature_query(VIEW, ["2024-01-02", "2024-01-01"], TYPES)
    assert "aggregate(array_sort(collect_list(CAST(_v0 AS DOUBLE)))" in sql
    assert "CAST(SUM(_v1) AS INT)" in sql and "_v1 AS DOUBLE" not in sql
    # the dates are day indexes, sorted; the read covers the longest lookback (30 days TTL)
    assert "IN (19723, 19724)" in sql and "TIMESTAMP '2023-12-03 00:00:00'" in sql


def test_duckdb_gets_the_same_query_in_its_dialect():
    duck = for_engine(feature_query(VIEW, ["2024-01-01"], TYPES), "duckdb")
    assert "LIST_REDUCE" in duck.upper() and "GENERATE_SERIES" in duck.upper()
    assert "`" not in duck


def test_an_unknown_engine_is_named():
    with pytest.raises(ValueError, match="unknown engine 'flink'"):
        for_engine("SELECT 1", "flink")


def test_a_query_needs_a_date():
    with pytest.raises(ValueError, match="at least one date"):
        feature_query(VIEW, [], TYPES)
