"""docker-compose.yaml: validated by docker-compose itself (no engine needed) and by its contents."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "AIRFLOW_FERNET_KEY": "test-fernet",
    "AIRFLOW_JWT_SECRET": "test-jwt-secret",
    "AIRFLOW_DB_PASSWORD": "test-db",
    "SOURCE_DB_PASSWORD": "test-source",
}
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


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


@pytest.mark.integration
def test_compose_refuses_to_start_without_secrets():
    done = compose_config({})
    assert done.returncode != 0 or "Missing mandatory value" in done.stderr
    assert "set AIRFLOW_" in done.stderr or "set SOURCE_" in done.stderr


@pytest.mark.integration
def test_every_airflow_service_shares_image_secrets_and_project_mounts(resolved):
    services = resolved["services"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "test-jwt-secret", name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == "test-fernet", name
        assert service["image"] == "dagfoundry-airflow:latest", name
        targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/dag_configs"} <= targets, name
    commands = {name: " ".join(services[name]["command"]) if isinstance(services[name]["command"], list)
                else services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }


@pytest.mark.integration
def test_cdc_source_runs_with_logical_replication(resolved):
    command = resolved["services"]["source-db"]["command"]
    assert "wal_level=logical" in command


@pytest.mark.integration
def test_no_secret_is_written_in_the_file():
    text = (ROOT / "docker-compose.yaml").read_text()
    for line in text.splitlines():
        if any(word in line.upper() for word in ("PASSWORD:", "SECRET:", "FERNET_KEY:")):
            assert "${" in line, line
