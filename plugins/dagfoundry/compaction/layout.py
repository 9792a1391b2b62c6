"""Where compaction keeps its staging, journals, plans and markers under a lake root.

``<lake_root>/_staging/<table>/<partition>/<version>/``               staged files
``<lake_root>/_staging/<table>/<partition>/<version>.journal.json``   the step journal
``<lake_root>/_staging/<table>/<partition>/.lock``                    publish/recovery lock
``<lake_root>/_staging/_compaction_plans/<version>/batch-NNNN.json``  Spark app input
``<lake_root>/<table>/<partition>/_compaction.json``                  marker of a published version

Files whose names start with ``_`` or ``.`` are ignored by Spark, Hive, Trino and pyarrow,
so the marker never shows up as data.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagfoundry.lake.publish import STAGING_DIR, LakeLocation

PLANS_DIR = "_compaction_plans"
MARKER_NAME = "_compaction.json"
JOURNAL_SUFFIX = ".journal.json"
DATA_SUFFIXES = {".parquet": "parquet", ".orc": "orc"}


def is_hidden(name: str) -> bool:
    """Return whether readers ignore ``name`` (Hive convention: leading ``_`` or ``.``)."""
    return name.startswith(("_", "."))


def data_format(name: str) -> str | None:
    """Return the format of a data file by its extension, or None for anything else."""
    return DATA_SUFFIXES.get(os.path.splitext(name)[1])


def partition_location(lake_root: Path, table: str, partition: str) -> LakeLocation:
    """Return the publishable location of a partition (``partition`` empty: the whole table)."""
    return LakeLocation(Path(lake_root), f"{table}/{partition}" if partition else table)


def journal_path(location: LakeLocation, version: str) -> Path:
    """Return the journal file of ``version`` beside its staging directory."""
    staged = location.staging(version)
    return staged.with_name(staged.name + JOURNAL_SUFFIX)


def journals_under(lake_root: Path, table: str) -> list[Path]:
    """Return every journal file of ``table``, sorted."""
    root = Path(lake_root) / STAGING_DIR / table
    return sorted(root.rglob(f"*{JOURNAL_SUFFIX}")) if root.is_dir() else []


def plans_dir(lake_root: Path, version: str) -> Path:
    """Return the directory holding the Spark app's batch plans of ``version``."""
    return Path(lake_root) / STAGING_DIR / PLANS_DIR / version


def make_version(run_id: str, started_at: str) -> str:
    """Return a file-name-safe version name from an Airflow run id and a UTC timestamp.

    :param run_id: the DAG run id (``manual__2024-01-01T00:00:00+00:00``)
    :param started_at: compact UTC time (``20240101T000000``); leads, so versions sort by time
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.") or "run"
    return f"{started_at}-{safe}"[:120]


def link_if_missing(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` unless ``target`` exists (a resumed step).

    A hard link makes one file visible in two directories at no cost, so a file carried
    from one version of a partition to the next never disappears for a reader.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        pass


@contextmanager
def partition_lock(location: LakeLocation, *, wait: bool = True) -> Iterator[bool]:
    """Hold the partition's publish lock; yield False when ``wait`` is off and it is taken.

    ``flock`` is released by the kernel when the holder dies, so a killed task never
    leaves a partition locked.
    """
    lock_file = location.lake_root / STAGING_DIR / location.relative / ".lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
