"""Describe a capture and generate its Debezium PostgreSQL connector properties.

One generator serves both modes: ``embedded`` feeds the properties to the Debezium engine
inside the task (:mod:`dagfoundry.cdc.embedded_capture`), ``connect`` PUTs them to Kafka
Connect. The password is resolved from the Airflow connection at run time, masked in the
task logs at once, and never stored in a dataclass ``repr``, a spec, XCom or ``doc_md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dagfoundry.errors import DagfoundryError

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
SNAPSHOT_MODES = ("initial", "always", "initial_only", "no_data", "when_needed")

Mode = Literal["embedded", "connect"]


class CaptureConfigError(DagfoundryError):
    """A capture description is invalid (names the object and the reason)."""


@dataclass(frozen=True)
class CapturedTable:
    """One source table to capture.

    :param schema: PostgreSQL schema, e.g. ``public``
    :param table: table name
    :param primary_key: key columns in order; empty means "read them from the catalog at
        run time" (:func:`dagfoundry.cdc.source_schema.fetch_table_schemas`)
    """

    schema: str
    table: str
    primary_key: tuple[str, ...] = ()

    @property
    def table_id(self) -> str:
        """Return ``schema.table``, the name used in landing paths and Debezium lists."""
        return f"{self.schema}.{self.table}"

    def validate(self) -> None:
        for part, value in (("schema", self.schema), ("table", self.table), *(("primary_key", c) for c in self.primary_key)):
            if not _IDENTIFIER.match(value):
                raise CaptureConfigError(
                    f"captured table {self.schema}.{self.table}: {part} {value!r} is not a plain SQL identifier "
                    "(letters, digits, _ and $, not starting with a digit)"
                )


@dataclass(frozen=True)
class CaptureConfig:
    """Everything about a capture except the secret, which comes from the connection.

    :param source: short name of the source database (letters, digits, ``_``); it is the
        Debezium ``topic.prefix`` and engine name, and part of landing/mirror paths and of
        the offsets key, so it must never change once the capture ran
    :param conn_id: Airflow connection (type ``postgres``) of the source database
    :param tables: the captured tables
    :param database: database name; defaults to the connection's ``schema`` field
    :param slot_name: replication slot; default ``dagfoundry_<source>``
    :param publication_name: publication; default ``dagfoundry_<source>``. Embedded mode
        manages it (only tables with a replica identity, plus the signal table); connect
        mode lets Debezium create it filtered to the tables
    :param signal_table: ``schema.table`` of the Debezium signal table (ad-hoc incremental
        snapshots); None disables source-channel signals
    :param heartbeat_interval_ms: heartbeat period so the slot advances on quiet databases;
        0 disables heartbeats
    :param snapshot_mode: Debezium ``snapshot.mode`` (one of :data:`SNAPSHOT_MODES`)
    :param replica_identity_full: let Debezium set ``REPLICA IDENTITY FULL`` on the tables
        (needs ownership); makes unchanged TOASTed values and full before-images available
    :param extra_properties: further Debezium properties, applied last (no secrets here)
    """

    source: str
    conn_id: str
    tables: tuple[CapturedTable, ...]
    database: str | None = None
    slot_name: str | None = None
    publication_name: str | None = None
    signal_table: str | None = "public.dagfoundry_cdc_signal"
    heartbeat_interval_ms: int = 10_000
    snapshot_mode: str = "initial"
    replica_identity_full: bool = False
    extra_properties: tuple[tuple[str, str], ...] = field(default=())

    @property
    def slot(self) -> str:
        return self.slot_name or f"dagfoundry_{self.source}".lower()

    @property
    def publication(self) -> str:
        return self.publication_name or f"dagfoundry_{self.source}".lower()

    @property
    def engine_name(self) -> str:
        """Return the engine name; it is part of the stored offsets key, so it is stable."""
        return f"dagfoundry-{self.source}"

    def table(self, table_id: str) -> CapturedTable:
        for table in self.tables:
            if table.table_id == table_id:
                return table
        raise CaptureConfigError(f"capture {self.source!r}: table {table_id!r} is not captured")

    def validate(self) -> None:
        """Raise :class:`CaptureConfigError` naming the first problem found."""
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", self.source):
            raise CaptureConfigError(f"capture source {self.source!r}: use letters, digits and _ (starting with a letter)")
        if not self.tables:
            raise CaptureConfigError(f"capture {self.source!r}: no tables to capture")
        ids = [t.table_id for t in self.tables]
        if len(set(ids)) != len(ids):
            raise CaptureConfigError(f"capture {self.source!r}: a table is listed twice in {ids}")
        for table in self.tables:
            table.validate()
        if not _SLOT_NAME.match(self.slot):
            raise CaptureConfigError(f"capture {self.source!r}: slot name {self.slot!r} must be 1-63 of a-z, 0-9, _")
        if self.snapshot_mode not in SNAPSHOT_MODES:
            raise CaptureConfigError(
                f"capture {self.source!r}: snapshot_mode {self.snapshot_mode!r} is not one of {', '.join(SNAPSHOT_MODES)}"
            )
        if self.signal_table is not None and len(self.signal_table.split(".")) != 2:
            raise CaptureConfigError(f"capture {self.source!r}: signal_table {self.signal_table!r} must be schema.table")
        if self.heartbeat_interval_ms < 0:
            raise CaptureConfigError(f"capture {self.source!r}: heartbeat_interval_ms must be >= 0")


@dataclass(frozen=True)
class SourceConnection:
    """Where and as whom to connect to the source; resolved at run time only.

    :param password: never shown by ``repr`` and masked in task logs on resolution
    """

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)

    @classmethod
    def from_airflow(cls, conn_id: str, database: str | None = None) -> SourceConnection:
        """Read an Airflow connection and mask its password in task logs.

        :param conn_id: Airflow connection id (``AIRFLOW_CONN_*`` env vars work in tests)
        :param database: overrides the connection's ``schema`` (database) field
        """
        from airflow.sdk import BaseHook
        from airflow.sdk.log import mask_secret

        conn = BaseHook.get_connection(conn_id)
        if conn.password:
            mask_secret(conn.password)
        dbname = database or conn.schema
        if not conn.host or not dbname or not conn.login:
            raise CaptureConfigError(
                f"connection {conn_id!r} needs host, login and a database (schema field or the spec's database)"
            )
        return cls(host=conn.host, port=int(conn.port or 5432), dbname=dbname, user=conn.login, password=conn.password or "")

    def psycopg2_kwargs(self) -> dict[str, object]:
        """Return keyword arguments for ``psycopg2.connect``."""
        kwargs: dict[str, object] = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}
        if self.password:
            kwargs["password"] = self.password
        return kwargs


def debezium_properties(
    config: CaptureConfig,
    connection: SourceConnection,
    *,
    mode: Mode,
    offsets_file: Path | None = None,
) -> dict[str, str]:
    """Return the Debezium PostgreSQL connector properties for ``config``.

    :param config: the capture (validated here)
    :param connection: resolved connection; its password is included, so the caller must
        not log the result (Debezium itself masks ``*.password`` in its own logs)
    :param mode: ``embedded`` adds the engine's own settings (offsets file, no tombstones,
        fail fast); ``connect`` gives a Kafka Connect connector config
    :param offsets_file: where the embedded engine stores offsets (embedded mode only)
    """
    config.validate()
    tables = ",".join(_anchored(t.table_id) for t in config.tables)
    props: dict[str, str] = {
        "connector.class": POSTGRES_CONNECTOR_CLASS,
        "database.hostname": connection.host,
        "database.port": str(connection.port),
        "database.user": connection.user,
        "database.password": connection.password,
        "database.dbname": connection.dbname,
        "topic.prefix": config.source,
        "plugin.name": "pgoutput",
        "slot.name": config.slot,
        "publication.name": config.publication,
        # The project manages the publication in both modes (dagfoundry.cdc.publication):
        # Debezium's "filtered" would add every listed table, even one without a replica identity.
        "publication.autocreate.mode": "disabled",
        "table.include.list": tables,
        "snapshot.mode": config.snapshot_mode,
        # Exact numerics as text; timestamps as epoch microseconds (timestamptz as ISO text).
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "interval.handling.mode": "string",
        # Hex, not base64: under base64 an unchanged TOASTed bytea arrives as null.
        "binary.handling.mode": "hex",
        "hstore.handling.mode": "json",
        "skipped.operations": "none",
        "heartbeat.interval.ms": str(config.heartbeat_interval_ms),
        "lsn.flush.mode": "connector",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        # Kafka Connect's JSON converter writes a column's DEFAULT in place of an explicit
        # NULL unless told not to: a NULL in `flag boolean DEFAULT true` would land as true.
        "key.converter.replace.null.with.default": "false",
        "value.converter.replace.null.with.default": "false",
    }
    keyed = [t for t in config.tables if t.primary_key]
    if keyed:
        # Event keys = the declared keys, also for a table without a primary key (REPLICA
        # IDENTITY FULL): an incremental snapshot deduplicates its window by event key.
        props["message.key.columns"] = ";".join(f"{_anchored(t.table_id)}:{','.join(t.primary_key)}" for t in keyed)
    if config.signal_table:
        props["signal.data.collection"] = config.signal_table
        props["signal.enabled.channels"] = "source"
    if config.replica_identity_full:
        props["replica.identity.autoset.values"] = ",".join(f"{t.table_id}:FULL" for t in config.tables)
    if mode == "embedded":
        if offsets_file is None:
            raise CaptureConfigError(f"capture {config.source!r}: embedded mode needs an offsets file")
        props.update(
            {
                "name": config.engine_name,
                "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
                "offset.storage.file.filename": str(offsets_file),
                # Offsets are marked only after a batch is landed, then flushed at once.
                "offset.flush.interval.ms": "0",
                "converter.schemas.enable": "false",
                "converter.replace.null.with.default": "false",
                # A delete event carries the key already; tombstones only serve Kafka compaction.
                "tombstones.on.delete": "false",
                # Fail instead of retrying forever, so a task reports the reason.
                "errors.max.retries": "3",
                "errors.retry.delay.max.ms": "2000",
                "max.batch.size": "4096",
                "max.queue.size": "16384",
            }
        )
    elif mode == "connect":
        props.update({"name": config.engine_name, "tasks.max": "1"})
    else:
        raise CaptureConfigError(f"capture {config.source!r}: mode {mode!r} is not 'embedded' or 'connect'")
    props.update(dict(config.extra_properties))
    return props


def redacted(properties: dict[str, str]) -> dict[str, str]:
    """Return a copy of connector properties safe to log or return through XCom."""
    return {k: ("***" if "password" in k.lower() or "secret" in k.lower() else v) for k, v in properties.items()}


def _anchored(table_id: str) -> str:
    """Escape the dot so Debezium's regex list matches exactly this table."""
    return table_id.replace(".", r"\.").replace("$", r"\$")


def anchored_table(table_id: str) -> str:
    """Return the ``table.include.list`` entry that matches exactly ``table_id``."""
    return _anchored(table_id)


def included_tables(include_list: str) -> set[str]:
    """Return the table ids of a ``table.include.list`` written by :func:`anchored_table`."""
    return {entry.strip().replace(r"\.", ".").replace(r"\$", "$") for entry in include_list.split(",") if entry.strip()}
