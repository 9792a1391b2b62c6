"""Running a generated DAG through Airflow in a test: load it as the DAG processor does, read the run.

Shared by the integration tests of every kind that run ``dag.test()``.
"""

from __future__ import annotations

from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def load_dag(dag_id: str):
    """Load one DAG the way Airflow does: parse ``dags/`` with the config folder in the environment."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def task_states(run) -> dict[str, str | None]:
    """Return each task instance's state of a finished run, by task id."""
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def last_asset_event_extra(asset_name: str) -> dict:
    """Return the ``extra`` of the newest event of an Asset (by name) in the metadata database."""
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


def asset_event_count(asset_name: str) -> int:
    """Return how many events an Asset (by name) has in the metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count(AssetEvent.id))
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
        )
