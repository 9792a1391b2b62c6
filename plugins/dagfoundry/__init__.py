"""dagfoundry: production-grade Airflow DAGs from short YAML specs."""

from __future__ import annotations

__version__ = "0.1.0"
