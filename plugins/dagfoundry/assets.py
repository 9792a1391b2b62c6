"""Names of the Airflow Assets dagfoundry DAGs produce, in one place.

Specs schedule on these names (``schedule: [lake.mirror.shop.public.orders]``), so they are
part of the contract between teams: change them only with a migration note.
"""

from __future__ import annotations


def mirror_asset_name(source: str, table_id: str) -> str:
    """Return the Asset of a CDC lake mirror: ``lake.mirror.<source>.<schema>.<table>``."""
    return f"lake.mirror.{source}.{table_id}"


def feature_view_asset_name(view: str) -> str:
    """Return the Asset of a feature view's offline store: ``features.<view>``."""
    return f"features.{view}"


def compaction_asset_name(table: str) -> str:
    """Return the Asset a compaction run emits (metrics in its extra): ``lake.compaction.<table>``."""
    return f"lake.compaction.{table.replace('/', '.')}"


def model_asset_name(registered_model: str, alias: str) -> str:
    """Return the Asset of a registered model's alias: ``models.<model>.<alias>``.

    Retraining emits ``models.<model>.challenger``; promotion emits ``models.<model>.champion``.
    """
    return f"models.{registered_model}.{alias}"
