"""Atomic publishing of lake directories.

A lake table is plain Hive-style Parquet directories, readable by any engine. A new
version of a table (or of one partition) is written to a staging directory beside the
lake, verified, and then swapped into place with one ``renameat2(RENAME_EXCHANGE)``
system call: a reader opening the live path sees the whole old directory or the whole new
one, never a mix and never a gap. The replaced directory moves to the lake's trash, where
it stays for the retention period (for rollback and for readers still holding old file
paths) before :func:`purge_trash` removes it.

See ``docs/lake-layout.md`` for the layout and the scale-out path (object stores have no
atomic directory exchange; there a table format or a metastore location switch does this).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dagfoundry.errors import LakePublishError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

STAGING_DIR = "_staging"
TRASH_DIR = "_trash"


def exchange_directories(first: Path, second: Path) -> None:
    """Swap two existing paths on the same filesystem in one atomic system call.

    :param first: an existing directory
    :param second: another existing directory on the same filesystem
    :raises LakePublishError: when the filesystem cannot exchange atomically
    """
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise LakePublishError(
            f"cannot exchange {first} and {second} atomically: {os.strerror(err)} (errno {err}); "
            "the lake root must be a local POSIX filesystem (ext4, xfs, tmpfs) on Linux >= 3.15"
        )


@dataclass(frozen=True)
class LakeLocation:
    """Where one publishable directory (a table or a partition) lives in a lake.

    :param lake_root: the lake's root directory; staging and trash live under it, so all
        renames stay on one filesystem
    :param relative: the directory's path under the lake root, e.g. ``mirror/shop/orders``
        or ``features/user_daily/feature_date=2024-01-01``
    """

    lake_root: Path
    relative: str

    @property
    def live(self) -> Path:
        return self.lake_root / self.relative

    def staging(self, version: str) -> Path:
        """Return a fresh staging directory path for ``version`` (not created)."""
        return self.lake_root / STAGING_DIR / self.relative / version

    def trash(self, version: str) -> Path:
        """Return where the directory replaced by ``version`` is kept."""
        return self.lake_root / TRASH_DIR / self.relative / version


def publish_directory(location: LakeLocation, staged: Path, version: str) -> Path | None:
    """Make ``staged`` the live content of ``location`` atomically.

    :param location: the live directory to replace or create
    :param staged: a complete, verified directory on the lake's filesystem
    :param version: a name for this version, unique per location (run id, batch id)
    :return: where the replaced content is kept now, or None when there was none
    """
    live = location.live
    live.parent.mkdir(parents=True, exist_ok=True)
    if not live.exists():
        try:
            os.rename(staged, live)
            return None
        except OSError as exc:
            # Another writer created it meanwhile; fall through to the exchange.
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise LakePublishError(f"cannot publish {staged} to {live}: {exc}") from exc
    exchange_directories(staged, live)
    return keep_replaced(location, staged, version)


def keep_replaced(location: LakeLocation, replaced: Path, version: str) -> Path:
    """Move a directory just swapped out of ``location`` to the trash, marked with the time.

    :func:`publish_directory` calls it right after the exchange; a caller that exchanges
    itself (to journal the steps in between) or recovers from a crash between the two
    steps calls it directly.

    :param location: the live directory that ``replaced`` was swapped out of
    :param replaced: the replaced content (at the former staging path)
    :param version: the version that replaced it
    :return: where the replaced content is kept now
    """
    kept = location.trash(version)
    kept.parent.mkdir(parents=True, exist_ok=True)
    if kept.exists():
        shutil.rmtree(kept)
    os.rename(replaced, kept)
    _touch(kept)
    return kept


def restore_directory(location: LakeLocation, kept: Path, version: str) -> Path:
    """Put a kept (trashed) version back live atomically; the current one goes to the trash.

    :param location: the live directory
    :param kept: a directory previously returned by :func:`publish_directory`
    :param version: the name under which the replaced current content is kept
    :return: where the replaced current content is kept now
    """
    if not kept.is_dir():
        raise LakePublishError(f"cannot roll back {location.live}: kept version {kept} no longer exists")
    if not location.live.exists():
        os.rename(kept, location.live)
        (location.live / ".kept_at").unlink(missing_ok=True)
        return kept
    exchange_directories(kept, location.live)
    (location.live / ".kept_at").unlink(missing_ok=True)
    target = location.trash(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.rename(kept, target)
    _touch(target)
    return target


def purge_trash(
    lake_root: Path, retention_seconds: float, now: float | None = None, *, under: str | None = None
) -> list[Path]:
    """Delete kept versions older than the retention period.

    A kept version is a directory two levels or more under ``_trash`` whose own mtime (set
    when it was moved there) is older than ``now - retention_seconds``.

    :param under: only purge the trash of this relative path (a table), so jobs with
        different retention periods can share a lake
    :return: the directories removed
    """
    now = time.time() if now is None else now
    root = lake_root / TRASH_DIR / under if under else lake_root / TRASH_DIR
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for marker in sorted(root.rglob(".kept_at")):
        kept = marker.parent
        if now - marker.stat().st_mtime >= retention_seconds:
            shutil.rmtree(kept, ignore_errors=True)
            removed.append(kept)
    return removed


def _touch(kept: Path) -> None:
    """Mark when a directory was moved to the trash (a directory's own mtime is unreliable)."""
    (kept / ".kept_at").touch()
