"""Configuration of one compaction job (a spec's tables and thresholds), as plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dagfoundry.errors import DagfoundryError

OUTPUT_FORMATS = ("parquet", "orc")
COMPRESSIONS = {
    "parquet": ("snappy", "zstd", "gzip", "lz4", "none", "uncompressed"),
    "orc": ("snappy", "zstd", "zlib", "lz4", "none"),
}


class CompactionConfigError(DagfoundryError):
    """A compaction setting is invalid; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class CompactionSettings:
    """What to compact and how; built by the factory from a ``lake_compaction`` spec.

    :param lake_root: the lake's root directory (staging, trash and journals live under it)
    :param tables: table paths relative to the lake root (``mirror/shop/orders``) or glob
        patterns (``mirror/shop/*``); a named table must exist, a pattern may match nothing
    :param target_file_bytes: desired size of a compacted file; a partition of ``B`` bytes
        becomes ``ceil(B / target_file_bytes)`` files
    :param min_small_files: act on a partition only when it has at least this many small files
    :param small_file_ratio: a file is small when it is below this fraction of the target
    :param closed_after_seconds: a partition is eligible only when nothing in it changed for
        this long, so active writers are left alone
    :param sort_columns: sort the rows of each partition by these columns (range-partitioned
        across the output files); empty keeps the input order roughly (no shuffle)
    :param output_format: ``parquet`` or ``orc``
    :param compression: codec of the output files (allowed values depend on the format)
    :param retention_seconds: how long replaced files are kept in the trash for rollback
        and for readers still holding old paths
    :param max_partitions_per_batch: partitions per Spark application (one mapped task each)
    :param max_bytes_per_batch: input bytes per Spark application
    :param abandon_staging_after_seconds: staging left by a run that never reached the
        exchange is deleted once it is this old (a younger one may belong to a live run)
    """

    lake_root: Path
    tables: tuple[str, ...]
    target_file_bytes: int = 128 * 1024 * 1024
    min_small_files: int = 5
    small_file_ratio: float = 0.75
    closed_after_seconds: float = 3600.0
    sort_columns: tuple[str, ...] = ()
    output_format: str = "parquet"
    compression: str = "snappy"
    retention_seconds: float = 7 * 24 * 3600.0
    max_partitions_per_batch: int = 32
    max_bytes_per_batch: int = 16 * 1024 * 1024 * 1024
    abandon_staging_after_seconds: float = 6 * 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lake_root", Path(self.lake_root))
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "sort_columns", tuple(self.sort_columns))
        for problem in self._problems():
            raise CompactionConfigError(f"compaction settings: {problem}")

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not self.tables:
            problems.append("tables: at least one table name or pattern is required")
        for table in self.tables:
            if not table or table.startswith("/") or ".." in Path(table).parts:
                problems.append(f"tables: {table!r} must be a relative path under the lake root")
            elif any(part.startswith(("_", ".")) for part in Path(table).parts):
                problems.append(f"tables: {table!r} names a hidden or reserved directory")
        if self.target_file_bytes < 1024 * 1024:
            problems.append(f"target_file_bytes: {self.target_file_bytes} is below 1 MiB")
        if self.min_small_files < 2:
            problems.append(f"min_small_files: {self.min_small_files} must be at least 2")
        if not 0 < self.small_file_ratio <= 1:
            problems.append(f"small_file_ratio: {self.small_file_ratio} must be in (0, 1]")
        if self.output_format not in OUTPUT_FORMATS:
            problems.append(f"output_format: {self.output_format!r} is not one of {OUTPUT_FORMATS}")
        elif self.compression not in COMPRESSIONS[self.output_format]:
            allowed = COMPRESSIONS[self.output_format]
            problems.append(f"compression: {self.compression!r} is not allowed for {self.output_format} {allowed}")
        for name in ("closed_after_seconds", "retention_seconds", "abandon_staging_after_seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name}: {value} must be a non-negative number of seconds")
        if self.max_partitions_per_batch < 1 or self.max_bytes_per_batch < 1:
            problems.append("max_partitions_per_batch and max_bytes_per_batch must be positive")
        return problems

    def target_files(self, total_bytes: int) -> int:
        """Return how many files a partition of ``total_bytes`` should become."""
        return max(1, math.ceil(total_bytes / self.target_file_bytes))
