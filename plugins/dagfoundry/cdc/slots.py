"""Replication slots: how much WAL a slot holds on the source, thresholds, decommissioning.

A logical slot keeps every WAL segment from its ``restart_lsn`` on, whether or not anything
reads it: an abandoned slot fills the source's disk. Each capture reports its slot's
retained WAL (``pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)``) in the log, the
summary and the mirror Assets' extra; ``capture.slot_wal_warn`` logs a warning and
``capture.slot_wal_fail`` fails the run beyond a size. :func:`decommission` drops the
slot and the publication of a capture that is gone (``python -m dagfoundry cdc-drop-slot``
or the DAG's ``drop_slot`` action).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    from dagfoundry.cdc.connector_config import SourceConnection

log = logging.getLogger(__name__)

_STATUS_SQL = """
SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status
FROM pg_replication_slots WHERE slot_name = %s
"""
_SENDER_STILL_SECONDS = 3.0


class SlotWalError(DagfoundryError):
    """A slot retains more WAL than the spec allows (``slot_wal_fail``)."""


@dataclass(frozen=True)
class SlotStatus:
    """A slot as PostgreSQL reports it (sizes in bytes; None when the slot does not exist)."""

    slot: str
    exists: bool
    active: bool = False
    retained_wal_bytes: int | None = None
    unconfirmed_wal_bytes: int | None = None
    wal_status: str | None = None

    def summary(self) -> dict:
        return {
            "slot": self.slot,
            "exists": self.exists,
            "retained_wal_bytes": self.retained_wal_bytes,
            "unconfirmed_wal_bytes": self.unconfirmed_wal_bytes,
            "wal_status": self.wal_status,
        }


def read_slot_status(connection: SourceConnection, slot: str) -> SlotStatus:
    """Return a slot's retained and unconfirmed WAL."""
    import psycopg2

    conn = psycopg2.connect(**connection.psycopg2_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(_STATUS_SQL, (slot,))
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return SlotStatus(slot, exists=False)
    return SlotStatus(slot, True, bool(row[0]), row[1], row[2], row[3])


def assess_slot_wal(status: SlotStatus, *, warn_bytes: int | None, fail_bytes: int | None) -> str | None:
    """Log the slot's retained WAL; warn or raise beyond the thresholds; return the warning.

    :raises SlotWalError: when it retains more than ``fail_bytes``
    """
    retained = status.retained_wal_bytes
    if retained is None:
        return None
    size = f"{retained / 2**20:,.1f} MiB"
    if fail_bytes is not None and retained > fail_bytes:
        raise SlotWalError(
            f"replication slot {status.slot!r} retains {size} of WAL on the source, more than slot_wal_fail "
            f"({fail_bytes / 2**20:,.1f} MiB): captures do not keep up, a long transaction holds it back, or the "
            "slot is abandoned (drop it with `python -m dagfoundry cdc-drop-slot`)"
        )
    if warn_bytes is not None and retained > warn_bytes:
        message = f"replication slot {status.slot!r} retains {size} of WAL on the source (slot_wal_warn {warn_bytes / 2**20:,.1f} MiB)"
        log.warning(message)
        return message
    log.info("replication slot %r retains %s of WAL on the source", status.slot, size)
    return None


def decommission(connection: SourceConnection, slot: str, publication: str | None) -> dict:
    """Drop a capture's slot and publication (both optional to exist); return what was dropped.

    :raises dagfoundry.cdc.offsets.OffsetResetError: while a capture holds the slot
    """
    from dagfoundry.cdc.offsets import drop_replication_slot
    from dagfoundry.cdc.publication import drop_publication

    dropped_slot = drop_replication_slot(connection, slot)
    dropped_publication = drop_publication(connection, publication) if publication else False
    return {"slot": slot, "slot_dropped": dropped_slot, "publication": publication, "publication_dropped": dropped_publication}


class WalSenderProgress:
    """Tell whether the slot's WAL sender has read past the WAL end seen at capture start.

    Idle time alone is not "caught up": before sending a large transaction PostgreSQL
    decodes all of it, which can take longer than the idle period.
    """

    def __init__(self, connection: SourceConnection, slot: str) -> None:
        import psycopg2

        self._slot = slot
        self._conn = psycopg2.connect(**connection.psycopg2_kwargs())
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()")
            self._target = cur.fetchone()[0]
        self._reached_at: float | None = None
        self._checked_at = 0.0
        self._sent: str | None = None
        self._sent_since = time.monotonic()

    def reached_at(self) -> float | None:
        """Return when the sender passed the start-time WAL end (None while it has not).

        A sender whose position has not moved for a few seconds has nothing left to read;
        that counts too (the WAL write position may lie past the last record on an idle
        server).
        """
        now = time.monotonic()
        if self._reached_at is None and now - self._checked_at >= 1.0:
            self._checked_at = now
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT r.sent_lsn, r.sent_lsn >= %s::pg_lsn FROM pg_replication_slots s "
                    "JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = %s",
                    (self._target, self._slot),
                )
                row = cur.fetchone()
            if row is not None:
                if row[0] != self._sent:
                    self._sent, self._sent_since = row[0], now
                if row[1] or now - self._sent_since >= _SENDER_STILL_SECONDS:
                    self._reached_at = now
        return self._reached_at

    def close(self) -> None:
        self._conn.close()
