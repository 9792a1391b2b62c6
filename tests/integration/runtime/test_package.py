"""dagfoundry as an installed package (``make venv`` installs it editable): CLI and Airflow provider."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from dagfoundry.get_provider_info import get_provider_info

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _installed() -> metadata.Distribution:
    try:
        return metadata.distribution("dagfoundry")
    except metadata.PackageNotFoundError:
        pytest.fail("the dagfoundry package is not installed in this venv: run `make venv` (pip install -e .)")


def test_provider_info_is_valid_and_names_real_hooks() -> None:
    import jsonschema

    info = get_provider_info()
    schema_path = Path(importlib.import_module("airflow").__file__).parent / "provider_info.schema.json"
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    for entry in info["connection-types"]:
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == entry["connection-type"]
        assert callable(hook.test_connection), f"{name} has no test_connection for the UI's Test button"


def test_airflow_lists_the_provider_and_its_connection_form() -> None:
    assert _installed().entry_points.select(group="apache_airflow_provider"), "no provider entry point"
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    table = next(line for line in listed.stdout.splitlines() if line.startswith("[{"))  # log lines may surround it
    assert "dagfoundry" in {p["package_name"] for p in json.loads(table)}
    probe = (
        "import json; from airflow.providers_manager import ProvidersManager as P; p = P();"
        "print(json.dumps({'hook': p.hooks['kafka_connect'].hook_class_name,"
        " 'fields': sorted(k for k in p.connection_form_widgets if k.startswith('extra__kafka_connect__'))}))"
    )
    form = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert form.returncode == 0, form.stderr[-2000:]
    assert json.loads(form.stdout.strip().splitlines()[-1]) == {
        "hook": "dagfoundry.hooks.debezium_connect.DebeziumConnectHook",
        "fields": ["extra__kafka_connect__timeout", "extra__kafka_connect__verify"],
    }


def test_console_script_lints_the_examples() -> None:
    _installed()
    script = shutil.which("dagfoundry", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert script, "no `dagfoundry` command next to the venv's python: run `make venv`"
    done = subprocess.run([script, "lint", str(ROOT / "dag_configs")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("; ok"), done.stdout
