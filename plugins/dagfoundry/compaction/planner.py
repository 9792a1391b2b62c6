"""Choose the partitions worth compacting, from file listings only (no Spark, no pyarrow).

A partition is a leaf Hive-style directory (``<col>=<value>``, possibly nested) that holds
data files; a table without partition directories is one partition (``""``). A partition
is chosen when its files are in the job's ``output_format`` (compaction never converts a
table), it is closed (nothing changed for ``closed_after_seconds``), holds at least
``min_small_files`` small files, has more files than ``ceil(bytes / target)``, and is not
exactly the file set a previous compaction published.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dagfoundry.compaction.layout import MARKER_NAME, data_format, is_hidden
from dagfoundry.compaction.settings import CompactionSettings
from dagfoundry.errors import DagfoundryError


class CompactionPlanError(DagfoundryError):
    """The plan cannot be made (a named table is missing, the lake root is unreadable)."""


@dataclass(frozen=True)
class DataFile:
    """One data file of a partition as listed at planning time."""

    name: str
    size: int
    mtime: float


@dataclass(frozen=True)
class PartitionListing:
    """What a partition directory holds: data files, and entries compaction cannot handle."""

    table: str
    partition: str
    files: tuple[DataFile, ...]
    foreign: tuple[str, ...]
    last_change: float

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class PartitionDecision:
    """A partition with the planner's verdict.

    :param chosen: True when it will be compacted
    :param reason: why (chosen or not), in words for the plan table
    :param target_files: ``ceil(bytes / target)`` (the ideal file count)
    :param small_files: files below ``small_file_ratio * target``
    """

    table: str
    partition: str
    chosen: bool
    reason: str
    files: tuple[DataFile, ...]
    target_files: int
    small_files: int

    @property
    def key(self) -> str:
        return f"{self.table}/{self.partition}" if self.partition else self.table

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict:
        """Return a JSON-safe summary (file names omitted: they can be thousands)."""
        return {
            "table": self.table,
            "partition": self.partition,
            "chosen": self.chosen,
            "reason": self.reason,
            "files": len(self.files),
            "bytes": self.total_bytes,
            "small_files": self.small_files,
            "target_files": self.target_files,
        }


@dataclass(frozen=True)
class CompactionPlan:
    """Every partition looked at, with the chosen ones cut into batches for Spark."""

    version: str
    decisions: tuple[PartitionDecision, ...]
    batches: tuple[tuple[PartitionDecision, ...], ...]

    @property
    def chosen(self) -> tuple[PartitionDecision, ...]:
        return tuple(d for d in self.decisions if d.chosen)

    def to_dict(self) -> dict:
        """Return the JSON-safe plan (for XCom and the log)."""
        chosen = self.chosen
        return {
            "version": self.version,
            "partitions_seen": len(self.decisions),
            "partitions_chosen": len(chosen),
            "files_before": sum(len(d.files) for d in chosen),
            "bytes_before": sum(d.total_bytes for d in chosen),
            "files_ideal": sum(d.target_files for d in chosen),
            "batches": [[d.key for d in batch] for batch in self.batches],
            "decisions": [d.to_dict() for d in self.decisions],
        }


def resolve_tables(settings: CompactionSettings) -> list[str]:
    """Return the table paths named or matched by ``settings.tables``, sorted, unique.

    :raises CompactionPlanError: when a table named without a pattern does not exist
    """
    root = settings.lake_root
    if not root.is_dir():
        raise CompactionPlanError(f"lake root {root} does not exist or is not a directory")
    found: set[str] = set()
    for entry in settings.tables:
        if glob.has_magic(entry):
            for match in glob.glob(entry, root_dir=root):
                parts = Path(match).parts
                if (root / match).is_dir() and not any(is_hidden(p) or "=" in p for p in parts):
                    found.add(Path(match).as_posix())
        elif (root / entry).is_dir():
            found.add(Path(entry).as_posix())
        else:
            raise CompactionPlanError(f"table {entry!r} not found: {root / entry} is not a directory")
    return sorted(found)


def list_partitions(lake_root: Path, table: str) -> list[PartitionListing]:
    """List every partition of ``table`` that holds data files (or foreign entries)."""
    listings: list[PartitionListing] = []
    _walk(Path(lake_root) / table, table, (), listings)
    return listings


def _walk(directory: Path, table: str, parts: tuple[str, ...], out: list[PartitionListing]) -> None:
    files: list[DataFile] = []
    foreign: list[str] = []
    children: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                (children if "=" in entry.name else foreign).append(entry.name)
            elif entry.is_file(follow_symlinks=False) and data_format(entry.name):
                stat = entry.stat(follow_symlinks=False)
                files.append(DataFile(entry.name, stat.st_size, stat.st_mtime))
            else:
                foreign.append(entry.name)
    if files or (foreign and not children):
        # Partition directories beside data files cannot be exchanged as one unit.
        foreign.extend(f"{c}/" for c in children if files)
        newest = max([directory.stat().st_mtime, *(f.mtime for f in files)])
        files.sort(key=lambda f: f.name)
        out.append(PartitionListing(table, "/".join(parts), tuple(files), tuple(sorted(foreign)), newest))
    for child in sorted(children):
        _walk(directory / child, table, (*parts, child), out)


def published_files(partition_dir: Path) -> frozenset[str] | None:
    """Return the data files a previous compaction published here, or None when unknown."""
    try:
        marker = json.loads((partition_dir / MARKER_NAME).read_text())
        return frozenset(marker["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def decide(listing: PartitionListing, settings: CompactionSettings, now: float) -> PartitionDecision:
    """Return whether ``listing`` is worth compacting, and why."""
    target = settings.target_files(listing.total_bytes)
    small = sum(1 for f in listing.files if f.size < settings.small_file_ratio * settings.target_file_bytes)

    def verdict(chosen: bool, reason: str) -> PartitionDecision:
        return PartitionDecision(listing.table, listing.partition, chosen, reason, listing.files, target, small)

    formats = {data_format(f.name) or "" for f in listing.files}
    idle = now - listing.last_change
    if listing.foreign:
        return verdict(False, f"holds entries that are not data files: {', '.join(listing.foreign[:5])}")
    if len(formats) > 1:
        return verdict(False, f"mixes data formats {sorted(formats)}")
    if formats and formats != {settings.output_format}:
        return verdict(False, f"holds {formats.pop()} files and this job writes {settings.output_format}: "
                              "compaction keeps a table's format")
    if idle < settings.closed_after_seconds:
        return verdict(False, f"still open: last change {idle:.0f}s ago < {settings.closed_after_seconds:.0f}s")
    location = settings.lake_root / listing.table / listing.partition
    if published_files(location) == frozenset(f.name for f in listing.files):
        return verdict(False, "already compacted (unchanged since the last compaction)")
    if len(listing.files) <= target:
        return verdict(False, f"already at target: {len(listing.files)} files for {target} ideal")
    if small < settings.min_small_files:
        return verdict(False, f"only {small} small files (< min_small_files {settings.min_small_files})")
    return verdict(True, f"{len(listing.files)} files ({small} small) -> {target}")


def cut_batches(chosen: list[PartitionDecision], settings: CompactionSettings) -> list[tuple[PartitionDecision, ...]]:
    """Cut the chosen partitions into batches bounded in partitions and input bytes."""
    batches: list[tuple[PartitionDecision, ...]] = []
    current: list[PartitionDecision] = []
    current_bytes = 0
    for decision in chosen:
        too_many = len(current) >= settings.max_partitions_per_batch
        too_big = current and current_bytes + decision.total_bytes > settings.max_bytes_per_batch
        if too_many or too_big:
            batches.append(tuple(current))
            current, current_bytes = [], 0
        current.append(decision)
        current_bytes += decision.total_bytes
    if current:
        batches.append(tuple(current))
    return batches


def plan_compaction(settings: CompactionSettings, *, version: str, now: float | None = None) -> CompactionPlan:
    """List the tables' partitions and choose those worth compacting.

    :param settings: the job's settings
    :param version: this run's version name (see :func:`~dagfoundry.compaction.layout.make_version`)
    :param now: the current time (epoch seconds); tests pass their own
    """
    now = time.time() if now is None else now
    decisions = [
        decide(listing, settings, now)
        for table in resolve_tables(settings)
        for listing in list_partitions(settings.lake_root, table)
    ]
    chosen = [d for d in decisions if d.chosen]
    return CompactionPlan(version, tuple(decisions), tuple(cut_batches(chosen, settings)))


def decision_from_dict(data: dict) -> PartitionDecision:
    """Rebuild a chosen partition from its batch-file form (see :mod:`~dagfoundry.compaction.journal`)."""
    files = tuple(DataFile(**f) for f in data["planned_files"])
    return PartitionDecision(data["table"], data["partition"], True, "", files, data["target_files"], 0)


def files_as_dicts(files: tuple[DataFile, ...]) -> list[dict]:
    """Return ``files`` as JSON-safe dicts (by hand: ``dataclasses.asdict`` deep-copies, 10x slower)."""
    return [{"name": f.name, "size": f.size, "mtime": f.mtime} for f in files]
