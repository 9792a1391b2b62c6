"""Verify a rewritten partition, then publish it atomically without losing late files.

Verifying (:func:`verify`): the staged files must be exactly those the Spark job reported,
the planned files must still be there, and DuckDB must read the same columns, row count
and row checksum from both (:mod:`.verification`); otherwise the staged files are deleted
and the partition is left as it was.

Publishing one partition (under its lock, see :func:`~.layout.partition_lock`):

1. the staged files must be exactly those the Spark job reported (names and sizes);
2. the live partition must still hold every planned file unchanged (size),
   otherwise someone else rewrote it: the version is discarded, the live data untouched;
3. live files that are not in the plan arrived after planning: each is hard-linked into
   the staged directory, so it is in both and never disappears for a reader;
4. a marker ``_compaction.json`` naming the version and its data files goes into the
   staged directory;
5. one ``renameat2(RENAME_EXCHANGE)`` swaps staged and live: readers see the old or the
   new partition, never a mix or a gap;
6. the replaced directory moves to the trash; files that landed in it between step 3 and
   step 5 are hard-linked into the live partition.

Every step is journaled before it runs, so :mod:`.recovery` can finish or discard it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from dagfoundry.compaction import failpoints
from dagfoundry.compaction.journal import Journal, load_journal, write_json_atomically
from dagfoundry.compaction.layout import MARKER_NAME, data_format, is_hidden, link_if_missing, partition_lock
from dagfoundry.compaction.metrics import partition_metrics
from dagfoundry.compaction.verification import verify_rewrite
from dagfoundry.errors import DagfoundryError, DataQualityError
from dagfoundry.lake.publish import exchange_directories, keep_replaced

log = logging.getLogger(__name__)


class CompactionVerificationError(DataQualityError):
    """Old and new content of a partition differ; the new files were discarded."""


class PartitionChangedError(DagfoundryError):
    """A partition changed after planning in a way compaction must not override."""


def verify(journal: Journal) -> Journal:
    """Prove a ``written`` version holds the planned content; journal it ``verified``.

    :raises CompactionVerificationError: the Spark job failed on the partition, or old and
        new content differ (the staged files are discarded)
    :raises PartitionChangedError: the planned or staged files are not what they were
    """
    figures = journal.result
    if not figures.get("ok"):
        raise verification_failed(journal, f"the rewrite failed on this partition: "
                                           f"{figures.get('error', 'no result recorded')}")
    problem = staged_files_problem(journal) or planned_files_problem(journal, live_data_files(journal.location.live))
    if problem:
        raise discard(journal, problem)
    live, staged = str(journal.location.live), str(journal.staged)
    old = [os.path.join(live, f.name) for f in journal.planned_files]
    new = [os.path.join(staged, f["name"]) for f in figures["files"]]
    formats = {data_format(path) for path in old + new}
    if len(formats) != 1:
        raise verification_failed(journal, f"old and new files differ in format: {sorted(map(str, formats))}")
    verification = verify_rewrite(old, new, str(formats.pop()))
    if verification.problem:
        raise verification_failed(journal, verification.problem)
    log.info("verified %s version %s: %s rows, checksum %s, %d columns (%.1fs)", journal.key, journal.version,
             verification.after.rows, verification.after.checksum, len(verification.after.columns),
             verification.seconds)
    return journal.advance("verified", verification=verification.to_dict())


def verification_failed(journal: Journal, problem: str) -> CompactionVerificationError:
    """Discard a version whose content is not proven equal; return the error to raise."""
    discard(journal, problem)
    return CompactionVerificationError(f"{journal.key} (version {journal.version}): {problem}; not published")


def staged_files_problem(journal: Journal, *, exact: bool = True) -> str | None:
    """Return how the staged directory differs from the files the Spark job reported, if it does.

    :param exact: False once publishing began: late files may already be linked in beside them
    """
    staged_now = {name: st.st_size for name, st in live_data_files(journal.staged).items()}
    expected = {f["name"]: f["size"] for f in journal.result["files"]}
    reported = staged_now if exact else {name: staged_now.get(name) for name in expected}
    if reported != expected:
        return f"staged files {sorted(staged_now)} differ from the Spark job's {sorted(expected)}"
    return None


def planned_files_problem(journal: Journal, live: dict[str, os.stat_result]) -> str | None:
    """Return which planned files are gone from (or changed in) the live partition, if any."""
    changed = [f.name for f in journal.planned_files if f.name not in live or live[f.name].st_size != f.size]
    return f"planned files vanished or changed after planning: {changed[:10]}" if changed else None


def live_data_files(directory: Path) -> dict[str, os.stat_result]:
    """Return the data files of a directory with their stat, ignoring hidden entries."""
    found: dict[str, os.stat_result] = {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not is_hidden(entry.name) and entry.is_file(follow_symlinks=False) and data_format(entry.name):
                    found[entry.name] = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        pass
    return found


def publish_partition(journal: Journal, figures: dict) -> dict:
    """Verify and publish one partition whose Spark rewrite is done; return its metrics.

    Safe to call again for the same version: a published or discarded journal is reported,
    not redone.

    :param journal: the partition's journal (state ``planned`` or later)
    :param figures: the Spark job's result for this partition
    :raises CompactionVerificationError: old and new content differ (staging discarded)
    :raises PartitionChangedError: the partition changed after planning (staging discarded)
    """
    started = time.monotonic()
    if journal.state in ("published", "discarded"):
        return journal.metrics or {"key": journal.key, "status": journal.state}
    failpoints.reach("after_write", journal.key)
    if journal.state == "planned":
        journal = journal.advance("written", result=figures)
    if journal.state == "written":
        journal = verify(journal)
    failpoints.reach("after_verify", journal.key)
    with partition_lock(journal.location):
        current = load_journal(journal.path)
        if current is None:
            raise PartitionChangedError(f"{journal.key}: journal {journal.path} vanished; another run discarded it")
        return swap_in(current, started)


def swap_in(journal: Journal, started: float) -> dict:
    """Publish a verified version (steps 1-6 of the module doc); the caller holds the lock."""
    location = journal.location
    if journal.state in ("published", "discarded"):
        return journal.metrics or {"key": journal.key, "status": journal.state}
    if read_marker(location.live).get("version") == journal.version:
        return finish_after_exchange(journal, started)
    live = live_data_files(location.live)
    problem = staged_files_problem(journal, exact=False) or planned_files_problem(journal, live)
    if problem:
        raise discard(journal, problem)
    expected = [f["name"] for f in journal.result["files"]]
    planned = {f.name for f in journal.planned_files}
    late = sorted(name for name in live if name not in planned)
    for name in late:
        link_if_missing(location.live / name, journal.staged / name)
    write_marker(journal.staged, journal.version, sorted(expected) + late)
    failpoints.reach("during_publish", journal.key)
    exchange_directories(journal.staged, location.live)
    failpoints.reach("after_exchange", journal.key)
    return finish_after_exchange(journal, started)


def finish_after_exchange(journal: Journal, started: float) -> dict:
    """Move the replaced directory to the trash, carry over files that landed in it, journal it."""
    location = journal.location
    kept = location.trash(journal.version)
    if journal.staged.is_dir():
        kept = keep_replaced(location, journal.staged, journal.version)
    carried = carry_over_late_files(journal, kept)
    published = read_marker(location.live).get("files", [])
    late = [name for name in published if name not in {f["name"] for f in journal.result["files"]}]
    metrics = partition_metrics(journal, late_files=len(late), publish_seconds=time.monotonic() - started)
    metrics["late_files_after_exchange"] = carried
    journal.advance("published", metrics=metrics)
    log.info("published %s version %s: %s", journal.key, journal.version, metrics)
    return metrics


def carry_over_late_files(journal: Journal, kept: Path) -> int:
    """Hard-link into the live partition files that landed in the replaced one after step 3."""
    if not kept.is_dir():
        return 0
    planned = {f.name for f in journal.planned_files}
    live = journal.location.live
    marker = read_marker(live)
    published = set(marker.get("files", []))
    carried = [name for name in live_data_files(kept) if name not in planned and name not in published]
    for name in carried:
        link_if_missing(kept / name, live / name)
    if carried:
        write_marker(live, journal.version, sorted(published | set(carried)))
        log.warning("%s: carried %d file(s) that arrived during the exchange: %s", journal.key, len(carried), carried)
    return len(carried)


def discard(journal: Journal, reason: str) -> PartitionChangedError:
    """Delete a version's staged files and journal it as discarded; return the error to raise."""
    shutil.rmtree(journal.staged, ignore_errors=True)
    journal.advance("discarded", metrics={"key": journal.key, "status": "discarded", "reason": reason})
    log.error("discarded %s version %s: %s", journal.key, journal.version, reason)
    return PartitionChangedError(f"{journal.key} (version {journal.version}): {reason}; not published")


def read_marker(directory: Path) -> dict:
    """Return the compaction marker of a directory, or an empty dict."""
    try:
        return json.loads((directory / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return {}


def write_marker(directory: Path, version: str, files: list[str]) -> None:
    """Record which version and which data files a compacted directory holds."""
    write_json_atomically(directory / MARKER_NAME, {"version": version, "files": sorted(files)})

