"""Finish or discard what a crashed run left in staging.

For each journal of a table that is not final:

- ``verified``: the rewrite was proven equal, so it is published now (finishing the
  exchange when the crash came after it). If the partition changed meanwhile, it is
  discarded instead.
- ``planned`` / ``written``: nothing live was touched. Once older than the abandon period
  (a younger one may belong to a run still writing) the staging is deleted; the next plan
  chooses the partition again.

Each partition is handled under its lock; a partition locked by a live run is left alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dagfoundry.compaction.journal import Journal, load_journal
from dagfoundry.compaction.layout import journals_under, partition_lock
from dagfoundry.compaction.publisher import PartitionChangedError, discard, swap_in

log = logging.getLogger(__name__)


def recover_table(lake_root: Path, table: str, *, abandon_after_seconds: float, now: float | None = None) -> list[dict]:
    """Resume or discard the unfinished versions of ``table``; return what was done."""
    now = time.time() if now is None else now
    actions: list[dict] = []
    for path in journals_under(lake_root, table):
        journal = load_journal(path)
        if journal is None or journal.state in ("published", "discarded"):
            continue
        with partition_lock(journal.location, wait=False) as locked:
            journal = load_journal(path) if locked else None
            if not locked:
                actions.append({"key": str(path), "action": "left alone: a live run holds the lock"})
            elif journal is None or journal.state in ("published", "discarded"):
                continue
            elif journal.state == "verified":
                actions.append(_resume(journal))
            elif now - journal.updated_at >= abandon_after_seconds:
                discard(journal, f"abandoned in state {journal.state!r} by a run that did not finish")
                actions.append({"key": journal.key, "version": journal.version, "action": "discarded"})
    for action in actions:
        log.warning("recovery of %s: %s", table, action)
    return actions


def _resume(journal: Journal) -> dict:
    try:
        metrics = swap_in(journal, time.monotonic())
    except PartitionChangedError as exc:
        return {"key": journal.key, "version": journal.version, "action": "discarded", "reason": str(exc)}
    return {"key": journal.key, "version": journal.version, "action": "published", "metrics": metrics}
