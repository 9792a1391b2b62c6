"""The model_promotion factory and spec: DAG shape, approval task, typed Params, located spec errors."""

from __future__ import annotations

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors

BASE = """\
kind: model_promotion
name: churn_promotion
registered_model: churn_model
metrics:
  roc_auc: {floor: 0.6, min_improvement: 0.001}
  log_loss: {min_relative_improvement: 0.0}
segments:
  - {column: region, metric: roc_auc, max_regression: 0.02}
approval: {mode: auto}
"""


def test_auto_dag_evaluates_routes_promotes_and_emits_the_champion_asset(load, upstream):
    dag = build_dag(load(BASE))
    assert dag.task_ids == ["evaluate", "route", "promote", "rollback", "record_outcome"]
    assert upstream(dag, "route") == {"evaluate"}
    assert upstream(dag, "promote") == {"evaluate", "route"}
    assert upstream(dag, "rollback") == {"route"}
    assert dag.get_task("record_outcome").trigger_rule == "all_done"
    assert [a.name for a in dag.get_task("promote").outlets] == ["models.churn_model.champion"]
    assert [a.name for a in dag.get_task("rollback").outlets] == ["models.churn_model.champion"]
    assert set(dag.params) == {"dry_run", "rollback"}
    assert dag.params.get_param("dry_run").schema["type"] == "boolean"
    assert dag.max_active_runs == 1


def test_required_approval_asks_through_the_hitl_operator(load, upstream):
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = build_dag(load(BASE.replace("mode: auto", "mode: required, timeout: 2h")))
    approval = dag.get_task("request_approval")
    assert isinstance(approval, HITLOperator) and approval.options == ["Approve", "Reject"]
    assert approval.defaults == ["Reject"] and approval.response_timeout.total_seconds() == 7200
    assert upstream(dag, "request_approval") == {"route"}
    assert upstream(dag, "promote") == {"evaluate", "request_approval"}
    assert "xcom_pull(task_ids='evaluate')['table']" in approval.body


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("roc_auc: {floor", "roc_aux: {floor", "metrics.roc_aux", "did you mean 'roc_auc'?"),
        ("log_loss: {min_relative_improvement: 0.0}", "rmse: {}", "metrics", "mix tasks"),
        ("log_loss: {min_relative_improvement: 0.0}", "log_loss: {direction: higher}", "metrics.log_loss.direction",
         "better when lower"),
        ("metric: roc_auc, max", "metric: pr_auc, max", "segments[0].metric", "not one of metrics"),
        ("approval: {mode: auto}", "approval: {mode: sometimes}", "approval.mode", "auto"),
        ("approval: {mode: auto}", "holdout: {source: table}", "holdout.table", "source: table needs `table`"),
        ("approval: {mode: auto}", "aliases: {challenger: champion}", "aliases", "must differ"),
        ("approval: {mode: auto}", "budgets: {max_model_bytes: 0}", "budgets.max_model_bytes", "greater than or equal"),
    ],
)
def test_spec_errors_name_file_line_and_key(load, old, new, key, message):
    with pytest.raises(SpecErrors) as caught:
        load(BASE.replace(old, new))
    [error] = caught.value.errors
    rendered = error.render()
    assert f": {key}: " in rendered and message in rendered, rendered
    assert rendered.startswith(str(error.path)) and error.line > 0


def test_promotion_declares_the_champion_asset_it_produces(load):
    spec = load(BASE).spec
    assert spec.produced_assets() == ["models.churn_model.champion"]
