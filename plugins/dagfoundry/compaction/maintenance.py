"""Roll a compacted partition back, and clean up what compaction keeps.

Rollback swaps the kept (pre-compaction) directory back in with the same atomic exchange
as publishing. Files that arrived after the compaction are not in the kept directory, so
they are hard-linked into it first: rolling back restores the old files and keeps every
row written since.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from dagfoundry.compaction.journal import load_journal
from dagfoundry.compaction.layout import (
    PLANS_DIR,
    is_hidden,
    journals_under,
    link_if_missing,
    partition_location,
    partition_lock,
)
from dagfoundry.compaction.publisher import live_data_files, read_marker
from dagfoundry.compaction.settings import CompactionSettings
from dagfoundry.errors import DagfoundryError
from dagfoundry.lake.publish import STAGING_DIR, purge_trash, restore_directory

log = logging.getLogger(__name__)


class CompactionRollbackError(DagfoundryError):
    """A partition cannot be rolled back (not compacted, or its old version was purged)."""


def rollback_partition(lake_root: Path, table: str, partition: str, *, version: str) -> dict:
    """Restore the version a compaction replaced, keeping files written since.

    :param lake_root: the lake root
    :param table: table path under the lake root
    :param partition: partition path under the table (empty: unpartitioned table)
    :param version: name under which the current (compacted) content is kept in the trash
    :return: what was restored (JSON-safe)
    :raises CompactionRollbackError: the live partition is not a compacted version, or the
        version it replaced is no longer in the trash
    """
    location = partition_location(Path(lake_root), table, partition)
    with partition_lock(location):
        marker = read_marker(location.live)
        if not marker:
            raise CompactionRollbackError(
                f"cannot roll back {location.relative}: the live partition is not a compacted version "
                "(no _compaction.json); it may already have been rolled back"
            )
        kept = location.trash(marker["version"])
        if not kept.is_dir():
            raise CompactionRollbackError(
                f"cannot roll back {location.relative}: the version replaced by {marker['version']} "
                f"is no longer at {kept} (purged after the retention period)"
            )
        published = set(marker["files"])
        newer = [name for name in live_data_files(location.live) if name not in published]
        for name in newer:
            link_if_missing(location.live / name, kept / name)
        replaced = restore_directory(location, kept, version)
        # Files that landed in the compacted directory during the exchange.
        landed = [n for n in live_data_files(replaced) if n not in published and n not in newer]
        for name in landed:
            link_if_missing(replaced / name, location.live / name)
    result = {
        "key": location.relative,
        "restored_version": marker["version"],
        "replaced_kept_at": str(replaced),
        "files_live": len(live_data_files(location.live)),
        "newer_files_kept": len(newer) + len(landed),
    }
    log.warning("rolled back %s: %s", location.relative, result)
    return result


def cleanup(settings: CompactionSettings, tables: list[str], *, now: float | None = None) -> dict:
    """Purge expired trash, finished journals and abandoned staging of ``tables``.

    Unfinished journals are left to :func:`~dagfoundry.compaction.recovery.recover_table`.
    """
    now = time.time() if now is None else now
    root = settings.lake_root
    purged = [str(p) for t in tables for p in purge_trash(root, settings.retention_seconds, now, under=t)]
    journals_removed = 0
    for table in tables:
        for path in journals_under(root, table):
            journal = load_journal(path)
            if journal is None or journal.state not in ("published", "discarded"):
                continue
            if now - journal.updated_at >= settings.retention_seconds:
                path.unlink(missing_ok=True)
                journals_removed += 1
    staging_removed = [str(p) for t in tables for p in _abandoned_staging(root, t, settings, now)]
    plans_removed = _old_plans(root, settings.abandon_staging_after_seconds, now)
    return {
        "trash_purged": purged,
        "journals_removed": journals_removed,
        "staging_removed": staging_removed,
        "plans_removed": plans_removed,
    }


def _abandoned_staging(root: Path, table: str, settings: CompactionSettings, now: float) -> list[Path]:
    """Remove version directories with no unfinished journal, older than the abandon period."""
    removed: list[Path] = []
    base = root / STAGING_DIR / table
    if not base.is_dir():
        return removed
    for directory, subdirs, _ in os.walk(base):
        for name in list(subdirs):
            if "=" in name or is_hidden(name):
                continue
            subdirs.remove(name)
            candidate = Path(directory) / name
            journal = load_journal(candidate.with_name(name + ".journal.json"))
            unfinished = journal is not None and journal.state not in ("published", "discarded")
            if not unfinished and now - candidate.stat().st_mtime >= settings.abandon_staging_after_seconds:
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    return removed


def _old_plans(root: Path, older_than: float, now: float) -> int:
    plans = root / STAGING_DIR / PLANS_DIR
    count = 0
    if plans.is_dir():
        for entry in plans.iterdir():
            if entry.is_dir() and now - entry.stat().st_mtime >= older_than:
                shutil.rmtree(entry, ignore_errors=True)
                count += 1
    return count

