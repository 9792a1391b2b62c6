"""Provider metadata: Airflow reads it through the ``apache_airflow_provider`` entry point.

Installed as a package (``pip install -e .``, which ``make venv`` does), dagfoundry appears in
``airflow providers list`` and its connection types get a form and a *Test* button in the UI.
Forms are declared here (``conn-fields``, ``ui-field-behaviour``), the way Airflow 3.2+ wants
them, so listing connection types imports no hook and needs no ``wtforms``.
"""

from __future__ import annotations

from typing import Any

from dagfoundry import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ``ProvidersManager`` reads."""
    return {
        "package-name": "dagfoundry",
        "name": "dagfoundry",
        "description": "Production-grade Airflow DAGs from short YAML specs (CDC, compaction, features, ML).",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "kafka_connect",
                "hook-class-name": "dagfoundry.hooks.debezium_connect.DebeziumConnectHook",
                "hook-name": "Kafka Connect (Debezium)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Scheme", "login": "User (basic auth)", "password": "Password"},
                    "placeholders": {
                        "host": "connect.example.com or https://connect:8083/prefix",
                        "schema": "http",
                        "port": "8083",
                        "extra": '{"headers": {"X-Team": "data"}}',
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Timeout of one REST call",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "verify": {
                        "label": "Verify TLS certificates",
                        "description": "Set false only for a test cluster with a self-signed certificate",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            },
        ],
    }
