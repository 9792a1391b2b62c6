"""Names of the Airflow Assets dagfoundry DAGs produce, and how their events are emitted, in one place.

Specs schedule on these names (``schedule: [lake.mirror.shop.public.orders]``), so they are
part of the contract between teams: change them only with a migration note.

An event means "something was published". Airflow emits an event for every Asset a task
lists in ``outlets`` whenever the task succeeds, changed or not; so the publishing task lists
one :class:`~airflow.sdk.AssetAlias` instead (:func:`publication_alias`) and adds an event per
Asset that really changed, with its figures in the extra (:func:`emit_published`). A run that
publishes nothing emits nothing, and a run that publishes one table emits that table's event.
The task also lists those Assets as ``inlets`` (it reads what it replaces), so the
dag-processor registers them before the first event: left to Airflow 3.3, two runs emitting a
new Asset's first event at once both create it, and the loser's task is set to failed on the
unique-name violation (seen with a parallel backfill on a PostgreSQL metadata database); and
the runs of one DAG publish one at a time, since the first event through the alias also
records the alias-Asset link, which races the same way (:func:`publishing_task_args`).
"""

from __future__ import annotations

from typing import Any

#: How a glob's ``*`` is written in an Asset name: ``:`` never occurs in a table path, so the
#: name of ``mirror/shop/public.order_*`` cannot collide with a real table's.
GLOB_IN_ASSET_NAME = ":any"


def publication_alias_name(dag_id: str) -> str:
    """Return the name of the Asset alias a DAG's publishing task emits through: ``<dag_id>.published``."""
    return f"{dag_id}.published"


def publication_alias(dag_id: str) -> Any:
    """Return the ``AssetAlias`` to list as the publishing task's only outlet."""
    from airflow.sdk import AssetAlias

    return AssetAlias(publication_alias_name(dag_id))


def publishing_task_args(dag_id: str, asset_names: list[str]) -> dict[str, Any]:
    """Return the task arguments of a DAG's publishing task: ``outlets``, ``inlets``, one at a time.

    ``max_active_tis_per_dag=1``: the first event of an Asset through the alias also records
    the alias-Asset association, and two runs doing that at once (a parallel backfill) collide
    on its primary key in Airflow 3.3, failing the loser's task after its work succeeded. Runs
    of one DAG publish one after the other instead; publishing is the short step of each run.

    :param asset_names: every Asset the task may emit an event of
    """
    from airflow.sdk import Asset

    return {
        "outlets": [publication_alias(dag_id)],
        "inlets": [Asset(name) for name in sorted(set(asset_names))],
        "max_active_tis_per_dag": 1,
    }


def emit_published(outlet_events: Any, dag_id: str, asset_name: str, extra: dict[str, Any]) -> None:
    """Emit one event of ``asset_name`` (with ``extra``) through the DAG's publication alias.

    :param outlet_events: the task's ``outlet_events`` context value (None outside a task run)
    """
    if outlet_events is None:
        return
    from airflow.sdk import Asset

    outlet_events[publication_alias(dag_id)].add(Asset(asset_name), extra=extra)


def mirror_asset_name(source: str, table_id: str) -> str:
    """Return the Asset of a CDC lake mirror: ``lake.mirror.<source>.<schema>.<table>``."""
    return f"lake.mirror.{source}.{table_id}"


def feature_view_asset_name(view: str) -> str:
    """Return the Asset of a feature view's offline store: ``features.<view>``."""
    return f"features.{view}"


def compaction_asset_name(table: str) -> str:
    """Return the Asset a compaction run emits (metrics in its extra): ``lake.compaction.<table>``.

    Folders become dots; a glob's ``*`` becomes ``:any`` (``mirror/shop/public.order_*`` ->
    ``lake.compaction.mirror.shop.public.order_:any``), a name a spec can schedule on.
    """
    return f"lake.compaction.{table.replace('/', '.').replace('*', GLOB_IN_ASSET_NAME)}"


def model_asset_name(registered_model: str, alias: str) -> str:
    """Return the Asset of a registered model's alias: ``models.<model>.<alias>``.

    Retraining emits ``models.<model>.challenger``; promotion emits ``models.<model>.champion``.
    """
    return f"models.{registered_model}.{alias}"
