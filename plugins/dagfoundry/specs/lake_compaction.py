"""Spec of the ``lake_compaction`` kind: small lake files rewritten into right-sized ones, atomically."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from dagfoundry.assets import compaction_asset_name
from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation
from dagfoundry.specs.engine import ENGINE_DESCRIPTION, DuckDBSpec, Engine
from dagfoundry.specs.spark import SparkSpec
from dagfoundry.specs.types import ByteSize, Duration, Identifier

if TYPE_CHECKING:
    from pathlib import Path

    from dagfoundry.compaction import CompactionSettings

_TABLE_PATTERN = re.compile(r"^[A-Za-z0-9_./=\-*]+$")

#: Codecs each format's writer accepts.
_COMPRESSIONS = {
    "parquet": ("snappy", "zstd", "gzip", "lz4", "none", "uncompressed"),
    "orc": ("snappy", "zstd", "zlib", "lz4", "none"),
}


def _table_pattern(value: str) -> str:
    if not _TABLE_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a table path: use letters, digits and _ . / = - * (for patterns)")
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(f"{value!r} must be a relative path under the lake root, without '..' or empty parts")
    if any(part.startswith(("_", ".")) for part in parts):
        raise ValueError(f"{value!r} names a hidden or reserved directory (parts starting with '_' or '.')")
    return value


#: A table folder relative to the lake root (``events/orders``) or a glob (``mirror/shop/*``).
TablePattern = Annotated[str, AfterValidator(_table_pattern), WithJsonSchema({"type": "string", "pattern": _TABLE_PATTERN.pattern})]


class CompactionSparkSpec(SparkSpec):
    """How the rewrite runs on Spark (one application per batch of partitions)."""

    max_partitions_per_batch: int = Field(
        default=32, ge=1, le=10_000, description="Partitions rewritten by one Spark application (one mapped task)."
    )
    max_bytes_per_batch: ByteSize | None = Field(
        default=None, description="Input bytes per Spark application, e.g. '16GB'; null = the engine's 16GB."
    )


class LakeCompactionSpec(DagSpec):
    """Rewrite closed lake partitions full of small files into right-sized files, verified and swapped atomically."""

    max_active_runs_limit: ClassVar[int] = 1
    max_active_runs_reason: ClassVar[str] = "two compactions of one table would waste work"
    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "dry_run": ParamDeclaration(False, "boolean", "Only log the plan (chosen partitions and why); change nothing."),
        "rollback": ParamDeclaration(
            [],
            "array",
            "Partition keys to restore to their files before the last compaction, e.g. "
            "events/orders/event_date=2024-01-01; when set, nothing else runs.",
        ),
    }

    kind: Literal["lake_compaction"]
    tables: tuple[TablePattern, ...] = Field(
        min_length=1,
        description="Table folders relative to the lake root (events/orders) or glob patterns (mirror/shop/*).",
    )
    target_file_size: ByteSize = Field(
        default=128 * 1024 * 1024, description="Desired size of a compacted file ('64MB', '1GB'); at least 1MB."
    )
    min_small_files: int = Field(
        default=5, ge=2, description="Compact a partition only with at least this many small files."
    )
    small_file_ratio: float = Field(
        default=0.75, gt=0, le=1, description="A file is small below this fraction of target_file_size."
    )
    closed_after: Duration = Field(
        default=timedelta(hours=1),
        description="Touch a partition only when its newest file is older than this ('2h'): writers are left alone.",
    )
    sort_columns: tuple[Identifier, ...] = Field(
        default=(), description="Sort each partition's rows by these columns; empty keeps the order (no shuffle)."
    )
    output_format: Literal["parquet", "orc"] = Field(
        default="parquet", description="Format of the table's files; partitions in another format are left alone."
    )
    compression: Literal["snappy", "zstd", "gzip", "lz4", "zlib", "none", "uncompressed"] = Field(
        default="snappy", description="Codec of the compacted files (gzip and uncompressed: parquet; zlib: orc)."
    )
    retention: Duration = Field(
        default=timedelta(days=7), description="Keep replaced files this long, for rollback and slow readers."
    )
    engine: Engine = Field(default="duckdb", description=ENGINE_DESCRIPTION)
    duckdb: DuckDBSpec = Field(default_factory=DuckDBSpec, description="Bounds of the rewrite on the embedded engine.")
    spark: CompactionSparkSpec = Field(
        default_factory=CompactionSparkSpec, description="Spark settings (engine: spark); batch sizes for both engines."
    )

    @model_validator(mode="after")
    def _settings_are_valid(self) -> LakeCompactionSpec:
        for index, table in enumerate(self.tables):
            if table in self.tables[:index]:
                raise RuleViolation(("tables", index), f"table {table!r} is listed twice")
        allowed = _COMPRESSIONS[self.output_format]
        if self.compression not in allowed:
            message = f"{self.compression!r} cannot be written as {self.output_format}; use one of {', '.join(allowed)}"
            raise RuleViolation(("compression",), message)
        if self.engine == "duckdb" and self.output_format != "parquet":
            raise RuleViolation(
                ("output_format",), f"the embedded engine (engine: duckdb) writes Parquet only: set engine: spark for "
                f"{self.output_format} tables"
            )
        return self

    def produced_assets(self) -> list[str]:
        """Return the Assets this spec's DAG emits (one per table or pattern)."""
        return [compaction_asset_name(table) for table in self.tables]

    def compaction_settings(self, lake_root: str | Path) -> CompactionSettings:
        """Return the engine's settings of this job, for the lake under ``lake_root``."""
        from dagfoundry.compaction import CompactionSettings

        optional = {"max_bytes_per_batch": self.spark.max_bytes_per_batch} if self.spark.max_bytes_per_batch else {}
        return CompactionSettings(
            lake_root=lake_root,  # type: ignore[arg-type]  # __post_init__ makes it a Path
            tables=self.tables,
            target_file_bytes=self.target_file_size,
            min_small_files=self.min_small_files,
            small_file_ratio=self.small_file_ratio,
            closed_after_seconds=self.closed_after.total_seconds(),
            sort_columns=self.sort_columns,
            output_format=self.output_format,
            compression=self.compression,
            retention_seconds=self.retention.total_seconds(),
            max_partitions_per_batch=self.spark.max_partitions_per_batch,
            **optional,
        )
