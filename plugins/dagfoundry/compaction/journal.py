"""The per-partition step journal and the batch files handed to the Spark application.

A journal records one version of one partition as it moves through its states::

    planned -> written -> verified -> published          (or -> discarded)

It is written atomically (temporary file, fsync, rename), so after a crash it holds the
last state reached. Recovery reads it to resume or discard (see :mod:`.recovery`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dagfoundry.compaction.layout import journal_path, partition_location, plans_dir
from dagfoundry.compaction.planner import CompactionPlan, DataFile, files_as_dicts
from dagfoundry.compaction.settings import CompactionSettings
from dagfoundry.lake.publish import LakeLocation

STATES = ("planned", "written", "verified", "published", "discarded")


@dataclass(frozen=True)
class Journal:
    """The state of one partition version.

    :param lake_root: the lake root
    :param table: table path under the lake root
    :param partition: partition path under the table (empty for an unpartitioned table)
    :param version: the run's version name
    :param state: one of :data:`STATES`
    :param planned_files: the files the plan replaces (name, size, mtime)
    :param target_files: the ideal file count
    :param result: the Spark application's report on this partition (staged files, timings), once written
    :param verification: both sides' columns, rows and checksum (:mod:`.verification`), once verified
    :param metrics: figures filled in at publish time
    """

    lake_root: str
    table: str
    partition: str
    version: str
    state: str
    planned_files: tuple[DataFile, ...]
    target_files: int
    result: dict = field(default_factory=dict)
    verification: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    updated_at: float = 0.0

    @property
    def location(self) -> LakeLocation:
        return partition_location(Path(self.lake_root), self.table, self.partition)

    @property
    def key(self) -> str:
        return self.location.relative

    @property
    def staged(self) -> Path:
        return self.location.staging(self.version)

    @property
    def path(self) -> Path:
        return journal_path(self.location, self.version)

    def advance(self, state: str, **changes: Any) -> Journal:
        """Return a copy in ``state`` (with other changes), written to disk first."""
        if state not in STATES:
            raise ValueError(f"unknown journal state {state!r}; expected one of {STATES}")
        journal = replace(self, state=state, updated_at=time.time(), **changes)
        journal.save()
        return journal

    def save(self) -> None:
        """Write the journal atomically and durably."""
        data = {**self.__dict__, "planned_files": files_as_dicts(self.planned_files)}
        write_json_atomically(self.path, data)

    def delete(self) -> None:
        """Remove the journal file (the version is fully handled)."""
        self.path.unlink(missing_ok=True)


def load_journal(path: Path) -> Journal | None:
    """Read a journal, or return None when it is missing or torn (never written fully)."""
    try:
        data = json.loads(Path(path).read_text())
        data["planned_files"] = tuple(DataFile(**f) for f in data["planned_files"])
        return Journal(**data)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # The atomic write makes a torn journal impossible; an unreadable one is foreign.
        return None


def write_json_atomically(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` so a crash leaves the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_plan(plan: CompactionPlan, settings: CompactionSettings) -> list[str]:
    """Write a journal per chosen partition and one batch file per batch for the Spark app.

    :return: the batch files' paths, in batch order (one Spark application each)
    """
    root = settings.lake_root
    batch_files: list[str] = []
    for index, batch in enumerate(plan.batches):
        batch_file = plans_dir(root, plan.version) / f"batch-{index:04d}.json"
        partitions = []
        for decision in batch:
            journal = Journal(
                lake_root=str(root),
                table=decision.table,
                partition=decision.partition,
                version=plan.version,
                state="planned",
                planned_files=decision.files,
                target_files=decision.target_files,
            )
            journal.advance("planned")
            live = journal.location.live
            partitions.append(
                {
                    "key": journal.key,
                    "journal": str(journal.path),
                    "input_files": [str(live / f.name) for f in decision.files],
                    "staging_dir": str(journal.staged),
                    "target_files": decision.target_files,
                }
            )
        write_json_atomically(
            batch_file,
            {
                "version": plan.version,
                "output_format": settings.output_format,
                "compression": settings.compression,
                "target_file_bytes": settings.target_file_bytes,
                "sort_columns": list(settings.sort_columns),
                "result_path": str(batch_file.with_suffix(".result.json")),
                "partitions": partitions,
            },
        )
        batch_files.append(str(batch_file))
    return batch_files
