"""The retraining kind end to end through Airflow: real features (Spark), real GX, real trainer,
MLflow with a SQLite store under the temporary lake (the local default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from churn_lake import LOGICAL_DATE

pytestmark = pytest.mark.integration


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def task_states(run) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def last_asset_event_extra(asset_name: str) -> dict:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id.desc())
            .limit(1)
        ).one()
        return dict(event.extra)


def mlflow_client(lake: Path):
    import mlflow

    from dagfoundry.models.tracking import configure, local_default

    configure(local_default(lake))
    return mlflow.MlflowClient()


def versions_of(lake: Path, model: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client(lake).search_model_versions(f"name = '{model}'")
    except MlflowException:
        return []


@pytest.fixture(scope="module")
def first_run(airflow_db, churn_lake):
    run = load_dag("shop_churn_retraining").test(logical_date=LOGICAL_DATE)
    return run


def test_passing_run_registers_a_challenger_with_every_contract_tag(first_run, churn_lake):
    from airflow.sdk import DagRunState

    from dagfoundry.models import registry_tags as tags

    assert first_run.state == DagRunState.SUCCESS, task_states(first_run)
    client = mlflow_client(churn_lake)
    version = client.get_model_version_by_alias("shop_churn", tags.CHALLENGER)
    contract = [tags.SPEC, tags.SPEC_HASH, tags.CODE_VERSION, tags.TASK, tags.LABEL_COLUMN, tags.FEATURES,
                tags.HOLDOUT_DIGEST, tags.HOLDOUT_ARTIFACT, tags.TRAINING_DIGEST, tags.FEATURE_DATES, tags.METRICS,
                tags.DAG_RUN]
    assert [t for t in contract if not version.tags.get(t)] == []
    assert version.tags[tags.SPEC] == "shop_churn_retraining"
    assert version.tags[tags.FEATURE_DATES] == "2025-02-21..2025-05-09"
    assert json.loads(version.tags[tags.FEATURES])[0] == "orders_1d"
    metrics = json.loads(version.tags[tags.METRICS])
    assert set(metrics) == {"roc_auc", "pr_auc", "log_loss", "brier"}

    extra = last_asset_event_extra("models.shop_churn.challenger")
    assert extra["version"] == str(version.version) and extra["run_id"] == version.run_id
    assert extra["holdout_digest"] == version.tags[tags.HOLDOUT_DIGEST]

    run = client.get_run(version.run_id)
    contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"training", "holdout"}
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "datasets")}
    assert {"datasets/holdout.parquet", "datasets/train_sample.parquet"} <= artifacts
    reports = {a.path for a in client.list_artifacts(version.run_id, "reports")}
    assert reports == {"reports/validation.json", "reports/drift.json"}
    assert run.data.params["trainer.n_estimators"] == "100"
    # Artifacts stay beside the SQLite store (never MLflow's ./mlruns file store).
    assert run.info.artifact_uri.startswith((churn_lake / "_mlflow" / "artifacts").as_uri())

    import mlflow
    import pandas as pd

    from dagfoundry.models.scoring import compute_metrics, predict_scores

    model = mlflow.sklearn.load_model(f"models:/shop_churn/{version.version}")
    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=version.run_id,
                                                                   artifact_path=tags.HOLDOUT_ARTIFACT_PATH))
    features = json.loads(version.tags[tags.FEATURES])
    again = compute_metrics("binary_classification", holdout["churned"],
                            predict_scores(model, holdout[features], "binary_classification"), ["roc_auc"])
    assert again["roc_auc"] == pytest.approx(metrics["roc_auc"])


def test_promotion_example_makes_the_first_challenger_champion(first_run, churn_lake):
    from dagfoundry.promotion.audit import read_history

    client = mlflow_client(churn_lake)
    challenger = client.get_model_version_by_alias("shop_churn", "challenger")
    run = load_dag("shop_churn_promotion").test()
    assert task_states(run)["promote"] == "success", task_states(run)
    assert client.get_model_version_by_alias("shop_churn", "champion").version == challenger.version
    [entry] = read_history(client, "shop_churn")
    assert entry["champion_to"] == str(challenger.version) and entry["champion_from"] is None
    assert last_asset_event_extra("models.shop_churn.champion")["version"] == str(challenger.version)


def test_failing_data_check_registers_nothing_and_names_the_expectation(airflow_db, churn_lake, capfd):
    run = load_dag("churn_gx_fail").test(logical_date=LOGICAL_DATE)
    states = task_states(run)
    assert states["validate_training_set"] == "failed"
    assert states["train"] != "success" and states["register_model"] != "success"
    assert versions_of(churn_lake, "churn_gx_fail") == []
    folder = next((churn_lake / "_training" / "churn_gx_fail").iterdir())
    report = json.loads((folder / "validation.json").read_text())
    assert [f["expectation"] for f in report["failed"]] == ["expect_column_values_to_be_between"]
    logged = capfd.readouterr()
    assert "expect_column_values_to_be_between(column='orders_7d', max_value=2.0" in logged.out + logged.err


def test_drift_policy_skips_training_when_nothing_drifted(first_run, churn_lake):
    from dagfoundry.models import registry_tags as tags

    client = mlflow_client(churn_lake)
    champion = client.get_model_version_by_alias("shop_churn", tags.CHALLENGER)
    client.set_registered_model_alias("shop_churn", tags.CHAMPION, champion.version)
    before = len(versions_of(churn_lake, "shop_churn"))
    run = load_dag("churn_on_drift").test(logical_date=LOGICAL_DATE)
    states = task_states(run)
    assert states["check_drift"] == "success"
    assert states["train"] == "skipped" and states["register_model"] == "skipped"
    assert len(versions_of(churn_lake, "shop_churn")) == before
    drift = json.loads(next((churn_lake / "_training" / "churn_on_drift").iterdir()).joinpath("drift.json").read_text())
    assert drift["champion"] == str(champion.version) and drift["drifted"] == []
