"""Connect mode: decide the connector's tables and manage its publication before each deploy.

Embedded mode decides its tables at the start of every capture
(:mod:`dagfoundry.cdc.capture_tables`). A Kafka Connect connector runs on its own, so the
same rules are applied each time the DAG deploys (creates or updates) the connector:

- a table without a replica identity stays out of the publication **and** out of
  ``table.include.list`` (the application's own UPDATE/DELETE on it would fail; Debezium's
  ``publication.autocreate.mode=filtered`` would add it), and is reported with its fix;
- with ``capture.replica_identity_full`` the tables get ``REPLICA IDENTITY FULL`` first;
- the publication holds exactly the captured tables plus the signal table
  (``publication.autocreate.mode=disabled``);
- a table captured now but not in the deployed connector's ``table.include.list`` (it was
  skipped, or added to the spec) gets an incremental-snapshot signal after the deploy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagfoundry.cdc.connector_config import anchored_table, included_tables
from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import CaptureConfig, SourceConnection


class ConnectTablesError(DagfoundryError):
    """The connector cannot be deployed as it is: no capturable table, or a publication we cannot manage."""


@dataclass(frozen=True)
class ConnectTables:
    """The connector's tables for one deploy.

    :param captured: ``schema.table`` ids in the publication and ``table.include.list``
    :param skipped: uncapturable tables, each with the reason and the fix
    :param to_snapshot: captured tables the deployed connector did not include before
    :param publication: the publication's changes (``added``, ``removed``)
    """

    captured: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    to_snapshot: tuple[str, ...] = ()
    publication: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict:
        """Return a JSON-safe summary (for the deploy task's XCom and the pickup summary)."""
        return {"captured": list(self.captured), "skipped_tables": dict(self.skipped),
                "snapshot_requested": list(self.to_snapshot), "publication": dict(self.publication)}


def prepare_connect_tables(
    config: CaptureConfig, connection: SourceConnection, deployed_config: Mapping[str, str] | None
) -> ConnectTables:
    """Decide the tables, set replica identities if asked, and sync the publication.

    :param config: the capture
    :param connection: the source database (the user must own the tables, as for Debezium)
    :param deployed_config: the connector's current config on Kafka Connect, None when it
        does not exist yet (its initial snapshot then covers every captured table)
    :raises ConnectTablesError: when no table can be captured, a table captured now needs a
        snapshot and there is no signal table, or the publication cannot be changed
    """
    from dagfoundry.cdc.publication import prepare_source
    from dagfoundry.cdc.replica_identity import uncapturable_tables

    ids = [t.table_id for t in config.tables]
    skipped = uncapturable_tables(connection, ids, full_identity_is_set=config.replica_identity_full)
    captured = tuple(t for t in ids if t not in skipped)
    if not captured:
        raise ConnectTablesError(f"connector {config.engine_name!r}: no table can be captured: " + "; ".join(skipped.values()))
    before = included_tables(deployed_config.get("table.include.list", "")) if deployed_config else None
    to_snapshot = tuple(t for t in captured if before is not None and t not in before)
    if to_snapshot and not config.signal_table:
        raise ConnectTablesError(
            f"connector {config.engine_name!r}: tables {', '.join(to_snapshot)} join the connector now and there is no "
            "signal table to snapshot their existing rows; set capture.signal_table, or run the reset_offsets action"
        )
    changes = prepare_source(
        connection, captured, publication=config.publication, signal_table=config.signal_table,
        replica_identity_full=config.replica_identity_full, subject=f"connector {config.engine_name!r}",
        error=ConnectTablesError,
    )
    return ConnectTables(captured, skipped, to_snapshot, changes)


def restricted_properties(properties: Mapping[str, str], config: CaptureConfig, tables: ConnectTables) -> dict[str, str]:
    """Return the connector config limited to the captured tables, publication managed by us."""
    captured = [t for t in config.tables if t.table_id in tables.captured]
    restricted = dataclasses.replace(config, tables=tuple(captured))
    props = dict(properties)
    props["table.include.list"] = ",".join(anchored_table(t.table_id) for t in captured)
    props["publication.autocreate.mode"] = "disabled"
    keyed = [t for t in restricted.tables if t.primary_key]
    if keyed:
        props["message.key.columns"] = ";".join(f"{anchored_table(t.table_id)}:{','.join(t.primary_key)}" for t in keyed)
    else:
        props.pop("message.key.columns", None)
    if config.replica_identity_full:
        props["replica.identity.autoset.values"] = ",".join(f"{t}:FULL" for t in tables.captured)
    return props


def request_snapshots(config: CaptureConfig, connection: SourceConnection, tables: ConnectTables) -> list[str]:
    """Signal an incremental snapshot of each table that joined the connector; return the signal ids."""
    from dagfoundry.cdc.signals import request_incremental_snapshot

    signal_ids = []
    for table_id in tables.to_snapshot:
        assert config.signal_table is not None  # prepare_connect_tables refused otherwise
        declared = config.table(table_id).primary_key
        surrogate = declared[0] if len(declared) == 1 else None
        signal_ids.append(request_incremental_snapshot(connection, config.signal_table, [table_id], surrogate_key=surrogate))
    return signal_ids
