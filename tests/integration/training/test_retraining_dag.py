"""The retraining kind end to end through Airflow: real features (Spark), real GX, real trainer,
MLflow with a SQLite store under the temporary lake (the local default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from churn_lake import LOGICAL_DATE

from tests.integration.dag_runs import last_asset_event_extra, load_dag, task_states

pytestmark = pytest.mark.integration


def mlflow_client(lake: Path):
    import mlflow

    from dagfoundry.models.tracking import configure, local_default

    configure(local_default(lake))
    return mlflow.MlflowClient()


def versions_of(lake: Path, model: str) -> list:
    """Return the model's versions in the lake's store; [] only when the model does not exist.

    Any other MLflow error (a wrong or broken store) fails the test instead of reading as
    "nothing registered".
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from dagfoundry.models.tracking import local_default

    client = mlflow_client(lake)
    assert mlflow.get_registry_uri() == local_default(lake).tracking_uri
    try:
        return client.search_model_versions(f"name = '{model}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise


@pytest.fixture(scope="module")
def first_run(airflow_db, churn_lake):
    run = load_dag("shop_churn_retraining").test(logical_date=LOGICAL_DATE)
    return run


def mlflow_artifact(run_id: str, path: str) -> str:
    import mlflow

    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)


def test_passing_run_registers_a_challenger_with_every_contract_tag(first_run, churn_lake, churn_spec):
    import mlflow
    from airflow.sdk import DagRunState

    from dagfoundry.models import registry_tags as tags
    from dagfoundry.models.datasets import mlflow_dataset_digest
    from dagfoundry.training.steps import code_version, spec_hash

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
    inputs = {
        tag_values["mlflow.data.context"]: (d.dataset, tag_values)
        for d in run.inputs.dataset_inputs
        for tag_values in [{tag.key: tag.value for tag in d.tags}]
    }
    assert set(inputs) == {"training", "holdout"}
    for context, tag in (("training", tags.TRAINING_DIGEST), ("holdout", tags.HOLDOUT_DIGEST)):
        dataset, input_tags = inputs[context]
        assert input_tags[tags.DATASET_DIGEST] == version.tags[tag]
        assert dataset.digest == mlflow_dataset_digest(version.tags[tag]) and version.tags[tag].startswith(dataset.digest)
        assert json.loads(dataset.profile)["num_rows"] > 100
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "datasets")}
    assert {"datasets/holdout.parquet", "datasets/train_sample.parquet"} <= artifacts
    assert run.data.params["trainer.n_estimators"] == "100"

    build = json.loads(next((churn_lake / "_training" / "shop_churn_retraining").iterdir()).joinpath(
        "build.json").read_text())
    assert version.tags[tags.LABEL_SOURCE_VERSION] == build["label_source_version"]
    assert version.tags[tags.LABEL_SOURCE_VERSION].startswith("sha256:")
    assert version.tags[tags.SPEC_HASH] == spec_hash(churn_spec)
    assert version.tags[tags.CODE_VERSION] == code_version() and len(code_version()) == 40
    for tag in (tags.LABEL_SOURCE_VERSION, tags.FEATURE_DATES, tags.SPEC_HASH, tags.CODE_VERSION,
                tags.TRAINING_DIGEST, tags.HOLDOUT_DIGEST):
        assert run.data.tags[tag] == version.tags[tag], tag

    reports = {a.path for a in client.list_artifacts(version.run_id, "reports")}
    assert reports == {"reports/validation.json", "reports/drift.json"}
    validation = json.loads(Path(mlflow_artifact(version.run_id, "reports/validation.json")).read_text())
    assert (validation["success"], validation["evaluated"], validation["failed"]) == (True, 4, [])
    drift = json.loads(Path(mlflow_artifact(version.run_id, "reports/drift.json")).read_text())
    assert drift["champion"] is None and drift["train"] is True

    info = mlflow.models.get_model_info(f"models:/shop_churn/{version.version}")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == json.loads(version.tags[tags.FEATURES])
    assert info.signature.outputs is not None
    assert info.saved_input_example_info is not None
    uri = f"models:/shop_churn/{version.version}"
    example = mlflow.models.Model.load(uri).load_input_example(uri)
    assert list(example.columns) == json.loads(version.tags[tags.FEATURES]) and len(example) == 5
    # Artifacts stay beside the SQLite store (never MLflow's ./mlruns file store).
    assert run.info.artifact_uri.startswith((churn_lake / "_mlflow" / "artifacts").as_uri())

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


def failed_run(dag_id: str, capfd) -> tuple[dict[str, str | None], str]:
    """Run a DAG that must fail; return its task states and everything its tasks logged."""
    from airflow.sdk import DagRunState

    run = load_dag(dag_id).test(logical_date=LOGICAL_DATE)
    logged = capfd.readouterr()
    assert run.state == DagRunState.FAILED, task_states(run)
    return task_states(run), logged.out + logged.err


@pytest.mark.parametrize(
    ("dag_id", "failed_task", "message"),
    [
        pytest.param("churn_bad_trainer", "train",
                     "trainer 'include.models.no_such_module:train': cannot import module 'include.models.no_such_module'",
                     id="bad-trainer-entrypoint"),
        pytest.param("churn_trainer_raises", "train",
                     "trainer 'include.models.churn:train' raised InvalidParameterError",
                     id="trainer-raises"),
        pytest.param("churn_bad_labels", "build_training_set",
                     "label source labels/churn lacks column(s) ['cancelled']",
                     id="label-source-missing-columns"),
    ],
)
def test_failing_run_stops_at_the_faulty_task_names_the_problem_and_registers_nothing(
    airflow_db, churn_lake, capfd, dag_id, failed_task, message
):
    states, logged = failed_run(dag_id, capfd)
    order = ["build_training_set", "validate_training_set", "check_drift", "train", "register_model"]
    assert states[failed_task] == "failed"
    assert all(states[t] == "success" for t in order[: order.index(failed_task)]), states
    assert all(states[t] == "upstream_failed" for t in order[order.index(failed_task) + 1:]), states
    assert message in logged
    assert versions_of(churn_lake, dag_id) == []


def test_failing_data_check_registers_nothing_and_names_the_expectation(airflow_db, churn_lake, capfd):
    states, logged = failed_run("churn_gx_fail", capfd)
    assert states["build_training_set"] == "success" and states["validate_training_set"] == "failed"
    assert states["train"] == "upstream_failed" and states["register_model"] == "upstream_failed"
    assert versions_of(churn_lake, "churn_gx_fail") == []
    folder = next((churn_lake / "_training" / "churn_gx_fail").iterdir())
    report = json.loads((folder / "validation.json").read_text())
    assert [f["expectation"] for f in report["failed"]] == ["expect_column_values_to_be_between"]
    assert "expect_column_values_to_be_between(column='orders_7d', max_value=2.0" in logged

    # The data scientist sees why in the MLflow UI: a FAILED run with the GX report, no model.
    client = mlflow_client(churn_lake)
    experiment = client.get_experiment_by_name("dagfoundry/churn_gx_fail")
    [failed] = client.search_runs([experiment.experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.tags["dagfoundry.dag_run"].startswith("churn_gx_fail/")
    assert "expect_column_values_to_be_between" in failed.data.tags["dagfoundry.failure"]
    assert {a.path for a in client.list_artifacts(failed.info.run_id, "reports")} == {"reports/validation.json"}
    logged_report = json.loads(Path(mlflow_artifact(failed.info.run_id, "reports/validation.json")).read_text())
    assert logged_report["failed"] == report["failed"]
    assert client.list_artifacts(failed.info.run_id, "model") == []


@pytest.fixture(scope="module")
def champion(first_run, churn_lake):
    """Make the first run's version the champion of ``shop_churn`` (what model_promotion would do)."""
    from dagfoundry.models import registry_tags as tags

    client = mlflow_client(churn_lake)
    version = client.get_model_version_by_alias("shop_churn", tags.CHALLENGER)
    client.set_registered_model_alias("shop_churn", tags.CHAMPION, version.version)
    return version


def test_drift_policy_skips_training_when_nothing_drifted(champion, churn_lake):
    before = len(versions_of(churn_lake, "shop_churn"))
    run = load_dag("churn_on_drift").test(logical_date=LOGICAL_DATE)
    states = task_states(run)
    assert states["check_drift"] == "success"
    assert states["train"] == "skipped" and states["register_model"] == "skipped"
    assert len(versions_of(churn_lake, "shop_churn")) == before
    drift = json.loads(next((churn_lake / "_training" / "churn_on_drift").iterdir()).joinpath("drift.json").read_text())
    assert drift["champion"] == str(champion.version) and drift["drifted"] == []


def test_drift_against_the_champion_fires_on_a_shifted_set_only(champion, churn_lake, churn_spec, tmp_path):
    import pandas as pd

    from dagfoundry.errors import TrainingDataError
    from dagfoundry.models.tracking import local_default
    from dagfoundry.training.steps import drift_step

    first = next((churn_lake / "_training" / "shop_churn_retraining").iterdir())
    train = pd.read_parquet(first / "train.parquet")
    location = local_default(churn_lake)

    train.to_parquet(tmp_path / "train.parquet", index=False)
    calm = drift_step(churn_spec, tmp_path, location, "drift")
    assert calm["champion"] == str(champion.version)
    assert (calm["drifted"], calm["train"]) == ([], False)

    train.assign(amount_sum_7d=train["amount_sum_7d"] * 3 + 50).to_parquet(tmp_path / "train.parquet", index=False)
    shifted = drift_step(churn_spec, tmp_path, location, "drift")
    assert (shifted["drifted"], shifted["beyond_hard_bound"], shifted["train"]) == (["amount_sum_7d"], [], True)

    train.assign(amount_sum_7d=train["amount_sum_7d"] + 10_000).to_parquet(tmp_path / "train.parquet", index=False)
    with pytest.raises(TrainingDataError, match=r"feature\(s\) \['amount_sum_7d'\] drifted beyond psi_hard_bound 2.0"):
        drift_step(churn_spec, tmp_path, location, "drift")
