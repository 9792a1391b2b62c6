"""Where MLflow is: an Airflow connection, ``MLFLOW_TRACKING_URI``, or a local SQLite store.

MLflow's file store (``./mlruns``) is never used: the local default is a SQLite database
and an artifact folder under the lake root, so the registry works (aliases, tags, search).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dagfoundry.settings import lake_root

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class MlflowLocation:
    """A tracking/registry URI and, for the local default, the artifact folder of new experiments.

    :param tracking_uri: e.g. ``sqlite:////data/lake/_mlflow/mlflow.db`` or ``http://mlflow:5000``
    :param artifact_location: folder for new experiments' artifacts, or None to let the server decide
    """

    tracking_uri: str
    artifact_location: str | None = None


def local_default(root: Path | None = None) -> MlflowLocation:
    """Return the embedded default: SQLite store and artifacts under ``<lake_root>/_mlflow``."""
    base = (root or lake_root()) / "_mlflow"
    base.mkdir(parents=True, exist_ok=True)
    return MlflowLocation(
        tracking_uri=f"sqlite:///{(base / 'mlflow.db').resolve()}",
        artifact_location=(base / "artifacts").resolve().as_uri(),
    )


def resolve_location(conn_id: str | None) -> MlflowLocation:
    """Return where MLflow is for a spec: its connection, else the environment, else the local default.

    :param conn_id: an Airflow connection whose host (or full URI in ``extra.tracking_uri``) is the
        tracking URI; None to use ``MLFLOW_TRACKING_URI`` or the local default
    """
    if conn_id:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        uri = conn.extra_dejson.get("tracking_uri") or _uri_of(conn.conn_type, conn.host, conn.port, conn.schema)
        return MlflowLocation(tracking_uri=uri, artifact_location=conn.extra_dejson.get("artifact_location"))
    default = local_default()
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI: after configure(local_default())
    # the variable names the default store, whose artifacts must still go to its folder.
    if os.environ.get(TRACKING_URI_ENV) and os.environ[TRACKING_URI_ENV] != default.tracking_uri:
        return MlflowLocation(tracking_uri=os.environ[TRACKING_URI_ENV])
    return default


def _uri_of(conn_type: str | None, host: str | None, port: int | None, schema: str | None) -> str:
    if not host:
        raise ValueError("the MLflow connection has no host; set the host or extra.tracking_uri")
    if "://" in host:
        return host
    scheme = "https" if conn_type == "https" else "http"
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}/{schema}".rstrip("/") if schema else f"{scheme}://{netloc}"


def configure(location: MlflowLocation) -> None:
    """Point this process's MLflow client at ``location`` (tracking and registry)."""
    import mlflow

    mlflow.set_tracking_uri(location.tracking_uri)
    mlflow.set_registry_uri(location.tracking_uri)


def ensure_experiment(name: str, location: MlflowLocation) -> str:
    """Return the id of experiment ``name``, creating it (with the artifact folder) when missing."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return mlflow.create_experiment(name, artifact_location=location.artifact_location)
