"""Spec of the ``cdc_ingestion`` kind: Debezium CDC from PostgreSQL into the lake (and Snowflake)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from dagfoundry.assets import mirror_asset_name
from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation, StrictModel
from dagfoundry.specs.engine import ENGINE_DESCRIPTION, DuckDBSpec, Engine
from dagfoundry.specs.spark import SparkSpec, moved_spark_conn_id
from dagfoundry.specs.types import ByteSize, ConnId, Duration, Identifier, QualifiedName

#: ``capture`` keys that only the embedded engine uses (bounds of one run and its batches).
EMBEDDED_ONLY = frozenset({"idle", "max_events", "max_duration", "chunk_events"})
CDC_ACTIONS = ("capture", "resnapshot", "reset_offsets", "restart_connector", "drop_slot")
#: Snapshot modes that take a new snapshot when no offsets are stored: ``reset_offsets`` is
#: offered only with these (a reset without a snapshot would lose every unchanged row).
SNAPSHOT_ON_RESET = frozenset({"initial", "always", "initial_only", "when_needed"})
_ACTION_HELP = {
    "capture": "capture: the normal run.",
    "resnapshot": "resnapshot: re-read `tables` (incremental snapshot; empty = all), then capture.",
    "reset_offsets": "reset_offsets: forget the stored position so a new snapshot comes, then capture.",
    "restart_connector": "restart_connector: restart the failed connector tasks, then capture.",
    "drop_slot": "drop_slot: drop the replication slot and publication and forget the position (decommission; "
    "pause the DAG first, a later capture starts with a new snapshot).",
}


class SourceSpec(StrictModel):
    """The PostgreSQL database changes are captured from."""

    name: Identifier = Field(
        description="Short, stable name of the source (lake paths, slot, offsets). Never rename it after the first run."
    )
    conn_id: ConnId = Field(description="Airflow connection (type postgres) with host, login and password.")
    database: Identifier | None = Field(default=None, description="Database; defaults to the connection's schema.")


class CdcTableSpec(StrictModel):
    """One captured table."""

    name: QualifiedName = Field(description="schema.table in the source.")
    primary_key: tuple[Identifier, ...] = Field(
        default=(), description="Key columns; empty reads them from the source catalog at run time."
    )

    @model_validator(mode="after")
    def _schema_qualified(self) -> CdcTableSpec:
        if len(self.name.split(".")) != 2:
            raise RuleViolation(("name",), f"{self.name!r} must be written schema.table, e.g. public.orders")
        return self


class CaptureSpec(StrictModel):
    """How each run captures (embedded mode: the bounds of one micro-batch)."""

    idle: Duration = Field(default=timedelta(seconds=5), description="Caught up after this long without changes.")
    max_events: int = Field(
        default=500_000, ge=1, description="End the run after this many change events (an initial snapshot always completes)."
    )
    max_duration: Duration = Field(
        default=timedelta(minutes=15), description="End the run after this long (an initial snapshot always completes)."
    )
    chunk_events: int = Field(
        default=100_000, ge=1, description="Land a batch every this many events; bounds the task's memory (about 1 KB per event)."
    )
    slot_wal_warn: ByteSize | None = Field(
        default=1024**3, description="Warn (1GB by default) when the replication slot retains more WAL than this after a run; null = never."
    )
    slot_wal_fail: ByteSize | None = Field(
        default=None, description="Fail the run (after landing and mirroring) when the slot retains more WAL; null = never."
    )
    snapshot_mode: Literal["initial", "always", "initial_only", "no_data", "when_needed"] = "initial"
    heartbeat: Duration = Field(default=timedelta(seconds=10), description="Heartbeat so the slot advances; 0 = off.")
    signal_table: QualifiedName | None = Field(
        default="public.dagfoundry_cdc_signal", description="Debezium signal table for re-snapshots; null disables."
    )
    slot_name: Identifier | None = Field(default=None, description="Replication slot; default dagfoundry_<name> (slots are per server).")
    publication_name: Identifier | None = Field(default=None, description="Publication; default dagfoundry_<name>.")
    replica_identity_full: bool = Field(default=False, description="Set REPLICA IDENTITY FULL (needs ownership).")


class ConnectSpec(StrictModel):
    """Kafka Connect settings (``mode: connect``)."""

    conn_id: ConnId = Field(default="kafka_connect_default", description="HTTP connection of the Connect REST API.")
    sink_dir: str = Field(min_length=1, description="Folder where the sink connector writes change files.")
    max_restarts: int = Field(default=2, ge=0, le=20, description="Restarts of failed tasks before failing.")
    deferrable: bool | None = Field(
        default=None,
        description="connector_running waits in the triggerer; null = Airflow's [operators] default_deferrable.",
    )


class SnowflakeTargetSpec(StrictModel):
    """Optional Snowflake mirror of every captured table."""

    conn_id: ConnId = Field(default="snowflake_default", description="Airflow Snowflake connection.")
    target_schema: QualifiedName = Field(description="DATABASE.SCHEMA receiving one table per source table.")
    delete_mode: Literal["hard", "soft"] = Field(default="hard", description="Delete rows, or flag them _DF_DELETED.")


class CdcIngestionSpec(DagSpec):
    """Capture changes of PostgreSQL tables with Debezium; keep lake mirrors (and Snowflake) equal to the source."""

    max_active_runs_limit: ClassVar[int] = 1
    max_active_runs_reason: ClassVar[str] = "two captures of one source must never overlap"
    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "action": ParamDeclaration("capture", "string", " ".join(_ACTION_HELP.values()), enum=CDC_ACTIONS, required=True),
        "tables": ParamDeclaration([], "array", "Tables (schema.table) to re-snapshot; empty = all captured tables."),
    }

    kind: Literal["cdc_ingestion"]
    mode: Literal["embedded", "connect"] = Field(default="embedded", description="Where Debezium runs.")
    source: SourceSpec
    tables: tuple[CdcTableSpec, ...] = Field(min_length=1, description="Captured tables.")
    capture: CaptureSpec = Field(default_factory=CaptureSpec)
    connect: ConnectSpec | None = Field(default=None, description="Required with mode: connect.")
    engine: Engine = Field(default="duckdb", description=ENGINE_DESCRIPTION)
    duckdb: DuckDBSpec = Field(default_factory=DuckDBSpec, description="Bounds of the mirror job on the embedded engine.")
    spark: SparkSpec = Field(default_factory=SparkSpec, description="How the lake mirror job runs with engine: spark.")
    max_rows_per_batch: int | None = Field(default=None, ge=1, description="Fail a batch larger than this.")
    snowflake: SnowflakeTargetSpec | None = Field(default=None, description="Also MERGE each batch into Snowflake.")

    _moved_spark_conn_id = model_validator(mode="before")(moved_spark_conn_id)

    @model_validator(mode="after")
    def _mode_settings(self) -> CdcIngestionSpec:
        if self.mode == "connect" and self.connect is None:
            raise RuleViolation(("mode",), "mode 'connect' needs a 'connect' section with at least sink_dir")
        if self.mode == "embedded" and self.connect is not None:
            raise RuleViolation(("connect",), "a 'connect' section is only used with mode: connect")
        if self.mode == "connect":
            for key in sorted(EMBEDDED_ONLY & self.capture.model_fields_set):
                message = "bounds a micro-batch of the embedded engine; with mode: connect the connector streams on"
                raise RuleViolation(("capture", key), message)
        warn, fail = self.capture.slot_wal_warn, self.capture.slot_wal_fail
        if warn is not None and fail is not None and warn > fail:
            raise RuleViolation(("capture", "slot_wal_warn"), f"{warn} bytes is above slot_wal_fail ({fail} bytes)")
        names = [t.name for t in self.tables]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise RuleViolation(("tables", index, "name"), f"table {name!r} is listed twice")
        action = self.params.get("action")
        if action is not None and action not in self.actions:
            raise RuleViolation(
                ("params", "action"), f"{action!r} is not available here; this spec offers {', '.join(self.actions)}"
            )
        return self

    @property
    def actions(self) -> tuple[str, ...]:
        """Return the UI actions this spec's DAG can carry out, in form order.

        ``restart_connector`` needs Kafka Connect; ``resnapshot`` a signal table;
        ``reset_offsets`` a snapshot mode that snapshots again once the offsets are gone.
        """
        offered = []
        for action in CDC_ACTIONS:
            if action == "restart_connector" and self.mode != "connect":
                continue
            if action == "resnapshot" and self.capture.signal_table is None:
                continue
            if action == "reset_offsets" and self.capture.snapshot_mode not in SNAPSHOT_ON_RESET:
                continue
            offered.append(action)
        return tuple(offered)

    def param_declarations(self) -> dict[str, ParamDeclaration]:
        """Return the form with only the actions this spec can carry out."""
        from dataclasses import replace

        declared = dict(self.declared_params)
        help_text = " ".join(_ACTION_HELP[a] for a in self.actions)
        declared["action"] = replace(declared["action"], description=help_text, enum=self.actions)
        return declared

    def produced_assets(self) -> list[str]:
        """Return the Assets this spec's DAG emits (one lake mirror per table)."""
        return [mirror_asset_name(self.source.name, table.name) for table in self.tables]
