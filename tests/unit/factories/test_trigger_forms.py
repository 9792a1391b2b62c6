"""The trigger forms as the UI renders them: optional fields, date pickers in order, a one-line description."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors
from dagfoundry.factories.dag_header import summary_of

FEATURES = """\
kind: feature_backfill
name: user_features
schedule: "0 2 * * *"
entity_keys: [user_id]
sources:
  - {name: events, table: events/clicks, event_time: ts}
features:
  - {name: clicks_7d, function: count, window_days: 7}
"""
CDC = """\
kind: cdc_ingestion
name: orders_cdc
source: {name: shop, conn_id: shop_pg}
tables: [{name: public.orders}]
"""


def test_tables_may_stay_empty_and_empty_means_all(load):
    dag = build_dag(load(CDC))
    tables = dag.params.get_param("tables")
    assert "null" in tables.schema["type"], "the UI marks a field required unless it admits null"
    assert tables.schema["items"] == {"type": "string"}
    tables.resolve(None)  # an empty field validates
    assert dag.params.get_param("action").schema["type"] == "string", "an action is always chosen"


def test_feature_form_asks_start_then_end_with_date_pickers(load):
    dag = build_dag(load(FEATURES))
    assert list(dag.params) == ["start", "end", "chunk_days"]
    for name in ("start", "end"):
        param = dag.params.get_param(name)
        assert param.schema["format"] == "date" and "null" in param.schema["type"]
        param.resolve("2025-03-01")
        with pytest.raises(ParamValidationError):
            param.resolve("March 1st")


def test_a_backfill_ending_before_it_starts_fails_at_once(load):
    from types import SimpleNamespace

    dag = build_dag(load(FEATURES))
    plan = dag.get_task("plan_feature_dates").python_callable
    with pytest.raises(AirflowFailException, match="end 2025-03-01 is before start 2025-03-05"):
        plan(params={"start": "2025-03-05", "end": "2025-03-01"}, dag_run=SimpleNamespace(run_after=None))


def test_spec_defaults_of_start_and_end_are_checked(load):
    with pytest.raises(SpecErrors) as caught:
        load(FEATURES + "params: {start: '2025-03-05', end: '2025-03-01'}\n")
    (error,) = caught.value.errors
    assert error.key == "params.end" and "before start" in error.message


@pytest.mark.parametrize(
    ("description", "summary"),
    [
        (
            "Order activity per customer, point-in-time correct per day (only events before the end\n"
            "of the feature date count). Backfill with `airflow backfill create`.\n",
            "Order activity per customer, point-in-time correct per day (only events before the end "
            "of the feature date count).",
        ),
        ("Moves orders through three steps.", "Moves orders through three steps."),
        ("No full stop at all", "No full stop at all"),
        ("Version 1.5 of the view. Second.", "Version 1.5 of the view."),
    ],
)
def test_the_dag_description_is_the_first_sentence(description, summary):
    assert summary_of(description) == summary


def test_a_long_first_sentence_ends_at_a_word():
    text = "word " * 100
    summary = summary_of(text, limit=40)
    assert summary.endswith("…") and len(summary) <= 40 and summary[:-1].split() == ["word"] * 7


def test_generated_description_of_a_wrapped_yaml_block(load):
    text = FEATURES + "description: |\n  Clicks per user and day, counted over a\n  trailing week. More details follow.\n"
    assert build_dag(load(text)).description == "Clicks per user and day, counted over a trailing week."
