"""Operator that merges a table's landed change batches into its Snowflake mirror."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class SnowflakeCdcMergeOperator(BaseOperator):
    """Merge every landed batch above the target's watermark (see :mod:`dagfoundry.cdc.snowflake_merge`).

    Re-running is safe: merged batches are skipped and a replayed MERGE changes nothing.
    Run one merge per target at a time (``max_active_runs=1`` or a pool of one slot).

    :param snowflake_conn_id: Airflow connection of type ``snowflake``
    :param lake_root: lake root holding ``landing/`` (templated; default ``$DAGFOUNDRY_LAKE_ROOT``)
    :param source: capture source name, Debezium ``topic.prefix``
    :param table_id: ``schema.table`` of the source table
    :param target_table: ``[database.][schema.]table`` in Snowflake (templated)
    :param key_columns: primary key; None reads it from the batch manifest
    :param delete_mode: ``hard`` or ``soft``
    :param watermark_table: control table; default ``DAGFOUNDRY_CDC_WATERMARKS`` beside the target
    :return: (XCom) ``{"target", "batches", "staged_rows", "merged", "watermark"}``
    """

    template_fields = ("lake_root", "target_table")
    ui_color = "#d4ecfb"

    def __init__(
        self,
        *,
        snowflake_conn_id: str,
        source: str,
        table_id: str,
        target_table: str,
        key_columns: list[str] | None = None,
        delete_mode: str = "hard",
        watermark_table: str | None = None,
        lake_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.snowflake_conn_id = snowflake_conn_id
        self.lake_root = lake_root
        self.source = source
        self.table_id = table_id
        self.target_table = target_table
        self.key_columns = key_columns
        self.delete_mode = delete_mode
        self.watermark_table = watermark_table

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the merge and report what changed."""
        from dagfoundry.cdc.snowflake_merge import merge_landed_batches
        from dagfoundry.settings import lake_root

        result = merge_landed_batches(
            snowflake_conn_id=self.snowflake_conn_id,
            lake_root=self.lake_root or str(lake_root()),
            source=self.source,
            table_id=self.table_id,
            target_table=self.target_table,
            key_columns=self.key_columns,
            delete_mode=self.delete_mode,
            watermark_table=self.watermark_table,
        )
        self.log.info("Merged batches %s into %s: %s", result["batches"], self.target_table, result["merged"])
        return result
