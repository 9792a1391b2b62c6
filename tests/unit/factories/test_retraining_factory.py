"""The retraining factory and spec: DAG shape, typed trainer Params, data checks validated at lint time."""

from __future__ import annotations

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors

BASE = """\
kind: retraining
name: churn
schedule: [features.customer_order_features]
registered_model: churn_model
training:
  label_source: {table: labels/churn, entity_keys: [customer_id], label_time: label_time, label_column: churned}
  feature_views:
    - {view: customer_order_features, features: [orders_7d, amount_sum_7d]}
checks:
  - expect_column_values_to_not_be_null: {column: orders_7d}
trainer:
  entrypoint: include.models.churn:train
  params: {n_estimators: 50, learning_rate: 0.1}
metrics: [roc_auc, log_loss]
"""


def test_dag_builds_validates_checks_drift_trains_and_registers(load, upstream):
    dag = build_dag(load(BASE))
    assert dag.task_ids == ["build_training_set", "validate_training_set", "check_drift", "train", "register_model"]
    assert upstream(dag, "train") == {"check_drift"}
    assert upstream(dag, "register_model") == {"train"}
    assert [a.name for a in dag.get_task("register_model").outlets] == ["models.churn_model.challenger"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["features.customer_order_features"]
    assert set(dag.params) == {"retrain_when", "hp_n_estimators", "hp_learning_rate"}
    assert dag.params.get_param("hp_n_estimators").schema["type"] == ["integer", "null"]
    assert dag.params.get_param("hp_learning_rate").schema["type"] == ["number", "null"]


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("expect_column_values_to_not_be_null:", "expect_column_values_to_not_be_nul:", "checks[0].expect_column_values_to_not_be_nul",
         "did you mean 'expect_column_values_to_not_be_null'?"),
        ("{column: orders_7d}", "{colum: orders_7d}", "checks[0].expect_column_values_to_not_be_null.colum",
         "did you mean 'column'?"),
        ("{column: orders_7d}", "{mostly: 0.9}", "checks[0].expect_column_values_to_not_be_null",
         "needs argument(s) column"),
        ("metrics: [roc_auc, log_loss]", "metrics: [roc_auc, rmse]", "metrics[1]", "is for regression"),
        ("metrics: [roc_auc, log_loss]", "metrics: [roc_aux]", "metrics[0]", "did you mean 'roc_auc'?"),
        ("entrypoint: include.models.churn:train", "entrypoint: include.models.churn", "trainer.entrypoint",
         "should match pattern"),
        ("label_source: {table: labels/churn,", "label_source: {table: labels/churn, sql: 'select 1',",
         "training.label_source", "exactly one of `table` or `sql`"),
    ],
)
def test_spec_errors_point_at_the_key(load, old, new, key, message):
    assert old in BASE
    with pytest.raises(SpecErrors) as caught:
        load(BASE.replace(old, new))
    (error,) = caught.value.errors
    assert error.key == key and message in error.message, error.render()
    assert error.line > 0 and error.column > 0


def test_the_allow_list_matches_great_expectations():
    import great_expectations.expectations as gxe

    from dagfoundry.specs.retraining import EXPECTATIONS
    from dagfoundry.training.validation import expectation_class_name

    for name, (required, optional) in EXPECTATIONS.items():
        fields = getattr(gxe, expectation_class_name(name)).__fields__
        assert required == {f for f, info in fields.items() if info.required}, name
        assert optional <= set(fields), (name, optional - set(fields))
