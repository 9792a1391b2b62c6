"""docker-compose.yaml: validated by docker-compose itself (no engine needed) and by its contents.

No Docker engine runs here, so the stack cannot start: ``docker-compose config`` resolves the
file with test secrets, and the tests check what a team relies on: every connection the
example specs name, pinned images, ports, mounts, health checks, secrets only from ``.env``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
#: Every ``${KEY:?...}`` of the compose file: the secrets a team must put in .env.
REQUIRED_KEYS = sorted(set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_TEXT)))
SECRETS = {key: f"test-{key.lower().replace('_', '-')}" for key in REQUIRED_KEYS}
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
LAKE = "/opt/airflow/lake"

pytestmark = pytest.mark.integration


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test` installs it (scripts/ensure_system_packages.sh)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yaml"), "config"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    done = compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def services(resolved) -> dict:
    return resolved["services"]


def _command(service: dict, key: str = "command") -> str:
    value = service.get(key) or ""
    return " ".join(value) if isinstance(value, list) else value


def _mounts(service: dict) -> dict[str, str]:
    """Return ``{target: source}`` of a service's volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume.get("source"))
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def _connection_ids_of_the_examples() -> set[str]:
    """Return every ``*conn_id`` value of the example specs (defaults included)."""
    from dagfoundry.specs.loading import SpecLoader, find_spec_files

    configs = ROOT / "dag_configs"
    result = SpecLoader(configs).load_all(find_spec_files(configs))
    assert not result.errors, result.errors

    def walk(value: object) -> set[str]:
        if isinstance(value, dict):
            found = {v for k, v in value.items() if k.endswith("conn_id") and isinstance(v, str)}
            return found.union(*(walk(v) for v in value.values()))
        if isinstance(value, list | tuple):
            return set().union(*(walk(v) for v in value))
        return set()

    return set().union(*(walk(loaded.spec.model_dump()) for loaded in result.specs))


def test_compose_refuses_to_start_without_secrets():
    done = compose_config({})
    assert done.returncode != 0
    assert "in .env" in done.stderr


def test_every_required_key_is_documented_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert REQUIRED_KEYS and set(REQUIRED_KEYS) <= documented, set(REQUIRED_KEYS) - documented


def test_airflow_runs_the_celery_executor_with_redis_broker_and_postgres_metadata(services):
    for name, command in AIRFLOW_COMMANDS.items():
        service = services[name]
        env = service["environment"]
        assert _command(service) == command, name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{SECRETS['BROKER_PASSWORD']}@broker:6379/0", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@metadata-db:5432/airflow"), name
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == SECRETS["AIRFLOW_JWT_SECRET"], name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == SECRETS["AIRFLOW_FERNET_KEY"], name
        assert service["image"] == services["airflow-init"]["image"], name
        assert {"metadata-db", "broker", "airflow-init"} <= set(service["depends_on"]), name
    assert "airflow db migrate" in _command(services["airflow-init"])


def test_the_image_installs_the_project_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r /opt/airflow/requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow/project" in dockerfile
    assert "COPY --chown=airflow:root pyproject.toml" in dockerfile
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()


def test_every_connection_the_example_specs_use_is_defined(services):
    env = services["airflow-worker"]["environment"]
    used = _connection_ids_of_the_examples() | {"kafka_connect_default", "redis_default"}
    assert {"shop_postgres", "spark_local"} <= used
    missing = [c for c in sorted(used) if f"AIRFLOW_CONN_{c.upper()}" not in env]
    assert not missing, f"connections without AIRFLOW_CONN_*: {missing}"
    spark = json.loads(env["AIRFLOW_CONN_SPARK_LOCAL"])
    assert (spark["host"], spark["port"]) == ("spark://spark-master", 7077)
    source = json.loads(env["AIRFLOW_CONN_SHOP_POSTGRES"])
    assert (source["host"], source["password"]) == ("source-db", SECRETS["SOURCE_DB_PASSWORD"])
    connect = json.loads(env["AIRFLOW_CONN_KAFKA_CONNECT_DEFAULT"])
    assert (connect["host"], connect["port"]) == ("kafka-connect", 8083)
    online = json.loads(env["AIRFLOW_CONN_REDIS_DEFAULT"])
    assert (online["host"], online["password"]) == ("online-store", SECRETS["ONLINE_STORE_PASSWORD"])
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_every_image_is_pinned(services):
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image}"
    from dagfoundry import __version__

    assert services["airflow-init"]["image"] == f"dagfoundry-airflow:{__version__}"


def test_every_long_running_service_has_a_health_check(services):
    unchecked = [name for name, s in services.items() if name != "airflow-init" and "healthcheck" not in s]
    assert not unchecked, unchecked


def test_published_ports(services):
    published = {
        name: sorted(int(p["published"]) if isinstance(p, dict) else int(str(p).split(":")[0]) for p in s["ports"])
        for name, s in services.items()
        if s.get("ports")
    }
    assert published == {
        "airflow-apiserver": [8080],
        "spark-master": [8081],
        "kafka-connect": [8083],
        "mlflow": [5000],
        "source-db": [5433],
    }


def test_spark_cluster_runs_the_project_image_and_sees_the_lake_where_airflow_does(services):
    airflow_env = services["airflow-worker"]["environment"]
    assert airflow_env["DAGFOUNDRY_LAKE_ROOT"] == LAKE
    master, worker = services["spark-master"], services["spark-worker"]
    assert "org.apache.spark.deploy.master.Master" in _command(master, "entrypoint")
    assert "--port 7077" in _command(master, "entrypoint")
    assert _command(worker, "entrypoint").endswith("spark://spark-master:7077")
    for name in ("spark-master", "spark-worker", "airflow-worker", "airflow-scheduler"):
        assert services[name]["image"] == services["airflow-init"]["image"], name
    for name in ("spark-worker", "airflow-worker"):
        assert _mounts(services[name])[LAKE] == "lake", name
    # The Spark daemons get no Airflow secrets.
    assert not any("SECRET" in key or "FERNET" in key for key in worker.get("environment", {}))


def test_cdc_connect_mode_has_kafka_connect_with_debezium_and_a_logical_source(services):
    assert "wal_level=logical" in _command(services["source-db"])
    connect = services["kafka-connect"]
    assert connect["image"].startswith("quay.io/debezium/connect:")
    assert connect["environment"]["BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert set(connect["depends_on"]) == {"kafka", "source-db"}
    assert _mounts(connect)["/cdc-sink"] == _mounts(services["airflow-worker"])["/opt/airflow/cdc-sink"] == "cdc-sink"


def test_mlflow_server_uses_postgres_and_an_artifact_store(services):
    entrypoint = _command(services["mlflow"], "entrypoint")
    assert "--backend-store-uri postgresql://mlflow:" in entrypoint and "@mlflow-db:5432/mlflow" in entrypoint
    assert "--artifacts-destination /mlflow/artifacts --serve-artifacts" in entrypoint
    assert _mounts(services["mlflow"])["/mlflow/artifacts"] == "mlflow-artifacts"


def test_specs_are_mounted_for_every_airflow_component(services):
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        mounts = _mounts(services[name])
        assert mounts["/opt/airflow/project/dag_configs"].endswith("dag_configs"), name
        assert services[name]["environment"]["DAGFOUNDRY_CONFIG_DIR"] == "/opt/airflow/project/dag_configs", name


def test_no_secret_is_written_in_the_file():
    for line in COMPOSE_TEXT.splitlines():
        if any(word in line.upper() for word in ("PASSWORD:", "SECRET:", "FERNET_KEY:", "REQUIREPASS")):
            assert "${" in line, line
    for value in re.findall(r'"password": "([^"]*)"', COMPOSE_TEXT):
        assert value.startswith("${") and value.endswith("}"), value
    for value in re.findall(r"://[^:/@\s]+:([^@\s]+)@", COMPOSE_TEXT):
        assert value.startswith("${"), value


def test_every_connection_parses_and_spark_submits_to_the_standalone_master(services, monkeypatch):
    from airflow.models.connection import Connection
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    env = services["airflow-worker"]["environment"]
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            connection = Connection.from_json(value, conn_id=key.removeprefix("AIRFLOW_CONN_").lower())
            assert connection.host, key
            monkeypatch.setenv(key, value)
    assert SparkSubmitHook(conn_id="spark_local")._resolve_connection()["master"] == "spark://spark-master:7077"


def _examples_as_mounted(services: dict, tmp_path: Path) -> Path:
    """Return a copy of dag_configs/ with the files the compose stack mounts over it (as a container sees it)."""
    configs = tmp_path / "dag_configs"
    shutil.copytree(ROOT / "dag_configs", configs)
    inside = "/opt/airflow/project/dag_configs/"
    for target, source in _mounts(services["airflow-worker"]).items():
        if target.startswith(inside):
            shutil.copy(source, configs / target.removeprefix(inside))
    return configs


def _loaded_cdc_specs(configs: Path) -> list:
    from dagfoundry.specs.loading import SpecLoader, find_spec_files

    result = SpecLoader(configs).load_all(find_spec_files(configs))
    assert not result.errors, result.errors
    return [loaded.spec for loaded in result.specs if loaded.spec.kind == "cdc_ingestion"]


def test_cdc_runs_in_connect_mode_in_the_stack_without_editing_a_spec(services, tmp_path):
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        mounts = _mounts(services[name])
        assert mounts["/opt/airflow/project/dag_configs/cdc/defaults.yaml"].endswith("deploy/compose/cdc_defaults.yaml"), name
    sink_volume = "/opt/airflow/cdc-sink"
    (shop,) = _loaded_cdc_specs(_examples_as_mounted(services, tmp_path))
    assert shop.mode == "connect"
    assert shop.connect.conn_id == "kafka_connect_default"
    assert f"AIRFLOW_CONN_{shop.connect.conn_id.upper()}" in services["airflow-worker"]["environment"]
    assert shop.connect.sink_dir.startswith(sink_volume + "/")
    assert _mounts(services["airflow-worker"])[sink_volume] == _mounts(services["kafka-connect"])["/cdc-sink"]


def test_cdc_runs_embedded_outside_the_stack():
    (shop,) = _loaded_cdc_specs(ROOT / "dag_configs")
    assert shop.mode == "embedded" and shop.connect is None
    written = yaml.safe_load((ROOT / "dag_configs" / "cdc" / "shop.yaml").read_text())
    assert "mode" not in written and "connect" not in written, "the spec itself must not fix the mode"


def test_the_lake_jobs_run_on_the_stacks_spark_cluster_and_embedded_outside_it(services, monkeypatch):
    from dagfoundry.specs.loading import SpecLoader, find_spec_files

    def engines() -> dict[str, str]:
        result = SpecLoader(ROOT / "dag_configs").load_all(find_spec_files(ROOT / "dag_configs"))
        assert not result.errors, result.errors
        return {s.spec.name: s.spec.engine for s in result.specs if hasattr(s.spec, "engine")}

    monkeypatch.delenv("DAGFOUNDRY_LAKE_ENGINE", raising=False)
    outside = engines()
    assert set(outside) == {"orders_events_compaction", "customer_order_features", "shop_cdc", "shop_churn_retraining"}
    assert set(outside.values()) == {"duckdb"}
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        assert services[name]["environment"]["DAGFOUNDRY_LAKE_ENGINE"] == "spark", name
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ENGINE", services["airflow-worker"]["environment"]["DAGFOUNDRY_LAKE_ENGINE"])
    assert set(engines().values()) == {"spark"}
