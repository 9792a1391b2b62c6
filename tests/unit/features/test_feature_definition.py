"""Feature view definitions: strict names, clear errors, JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest

from dagfoundry.features.definition import (
    FeatureDefinitionError,
    FeatureViewDefinition,
    OnlineStoreTarget,
    SourceTable,
    SqlFeature,
    WindowAggregate,
)


def make_view(**overrides) -> FeatureViewDefinition:
    fields = {
        "name": "user_activity",
        "entity_keys": ("user_id",),
        "sources": (SourceTable("orders", "/lake/mirror/orders", "ordered_at", "event_date", "skip"),),
        "features": (
            WindowAggregate("orders_7d", "count", None, 7),
            WindowAggregate("amount_sum_30d", "sum", "amount", 30, filter_sql="status = 'paid'"),
            WindowAggregate("revenue_7d", "sum", None, 7, expression="amount * quantity"),
            SqlFeature("avg_order_7d", "amount_sum_30d / nullif(orders_7d, 0)"),
        ),
        "ttl_days": 14,
        "online": OnlineStoreTarget(kind="redis", redis_conn_id="redis_features"),
    }
    fields.update(overrides)
    return FeatureViewDefinition(**fields)


def test_json_round_trip_gives_an_equal_definition():
    view = make_view()
    assert FeatureViewDefinition.from_json(view.to_json()) == view


def test_lookback_covers_the_largest_window_and_the_ttl():
    assert make_view().lookback_days == 30
    assert make_view(ttl_days=45).lookback_days == 45


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "user-activity"}, "name: 'user-activity' is not a valid name"),
        ({"entity_keys": ()}, "entity_keys: at least one key column is required"),
        ({"entity_keys": ("user id",)}, "entity_keys: 'user id' is not a valid name"),
        ({"ttl_days": 0}, "ttl_days: 0 must be 1..3660"),
        ({"features": (WindowAggregate("x", "median", "amount", 7),)}, "features[0].function: 'median' is not one of"),
        ({"features": (WindowAggregate("x", "sum", None, 7),)}, "features[0]: 'sum' needs a column or an expression"),
        ({"features": (WindowAggregate("x", "count", None, 0),)}, "features[0].window_days: 0 must be 1..3660"),
        (
            {"features": (WindowAggregate("x", "count", None, 7, filter_sql="1=1; drop table t"),)},
            "must be one expression",
        ),
        ({"features": (WindowAggregate("user_id", "count", None, 7),)}, "clashes with an entity key"),
        (
            {"features": (WindowAggregate("feature_date", "count", None, 7),)},
            "clashes with an entity key, 'feature_date'",
        ),
        ({"features": (SqlFeature("x", "  "),)}, "features[0].expression: must be a non-empty Spark SQL expression"),
        ({"features": (WindowAggregate("x", "sum", "a", 7, expression="a*2"),)}, "give column or expression, not both"),
        (
            {"features": (WindowAggregate("x", "count", None, 7, source="clicks"),)},
            "source: 'clicks' is not one of ['orders']",
        ),
        (
            {"sources": (SourceTable("orders", "/x", "ts", on_missing="retry"),)},
            "sources[0].on_missing: 'retry' is not one of",
        ),
        ({"sources": (SourceTable("orders", "/x", "event time"),)}, "sources[0].event_time_column"),
        ({"online": OnlineStoreTarget(kind="memcached")}, "online.kind: 'memcached' is not one of"),
    ],
)
def test_invalid_definitions_name_the_view_the_field_and_the_reason(overrides, message):
    with pytest.raises(FeatureDefinitionError) as caught:
        make_view(**overrides)
    assert "feature view" in str(caught.value)
    assert message in str(caught.value)


def test_several_sources_need_each_aggregate_to_name_its_source():
    two = (SourceTable("orders", "/a", "ts"), SourceTable("sessions", "/b", "ts"))
    with pytest.raises(FeatureDefinitionError, match=r"features\[0\].source: required"):
        make_view(sources=two, features=(WindowAggregate("x", "count", None, 7),))
    view = make_view(sources=two, features=(WindowAggregate("x", "count", None, 7, source="sessions"),))
    assert view.source_of(view.window_aggregates[0]).name == "sessions"


def test_definitions_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_view().name = "other"  # type: ignore[misc]


def test_malformed_json_is_reported_with_the_view_name():
    data = make_view().to_dict()
    data["features"][0]["colour"] = "red"
    with pytest.raises(FeatureDefinitionError, match="'user_activity' is malformed"):
        FeatureViewDefinition.from_dict(data)
