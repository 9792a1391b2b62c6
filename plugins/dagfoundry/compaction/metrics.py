"""Figures of a compaction run: per partition, per run, and as a readable table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagfoundry.compaction.journal import Journal


def partition_metrics(journal: Journal, *, late_files: int, publish_seconds: float) -> dict:
    """Return the JSON-safe figures of one published partition.

    ``files_after``/``bytes_after`` count the compacted files plus the late files carried
    over, i.e. the live partition right after publishing.
    """
    written = journal.result["files"]
    files_before = len(journal.planned_files)
    bytes_before = sum(f.size for f in journal.planned_files)
    bytes_written = sum(f["size"] for f in written)
    return {
        "key": journal.key,
        "table": journal.table,
        "partition": journal.partition,
        "version": journal.version,
        "status": "published",
        "rows": journal.verification.get("after", {}).get("rows"),
        "files_before": files_before,
        "bytes_before": bytes_before,
        "avg_file_bytes_before": bytes_before // max(1, files_before),
        "files_written": len(written),
        "files_ideal": journal.target_files,
        "late_files": late_files,
        "files_after": len(written) + late_files,
        "bytes_after": bytes_written,
        "avg_file_bytes_after": bytes_written // max(1, len(written)),
        "rewrite_seconds": round(float(journal.result.get("seconds", 0.0)), 3),
        # What proving equal content cost (DuckDB reading old and new files, in the publish step).
        "verify_seconds": round(float(journal.verification.get("seconds", 0.0)), 3),
        "publish_seconds": round(publish_seconds, 3),
    }


def run_summary(partitions: Iterable[dict]) -> dict:
    """Sum partition metrics into run totals (published partitions only in the sums)."""
    rows = list(partitions)
    published = [m for m in rows if m.get("status") == "published"]
    files_after = sum(m["files_after"] for m in published)
    bytes_after = sum(m["bytes_after"] for m in published)
    files_before = sum(m["files_before"] for m in published)
    bytes_before = sum(m["bytes_before"] for m in published)
    return {
        "partitions_published": len(published),
        "partitions_failed": sum(1 for m in rows if m.get("status") not in ("published",)),
        "files_before": files_before,
        "bytes_before": bytes_before,
        "files_after": files_after,
        "bytes_after": bytes_after,
        "files_ideal": sum(m["files_ideal"] for m in published),
        "avg_file_bytes_before": bytes_before // max(1, files_before),
        "avg_file_bytes_after": bytes_after // max(1, files_after),
        "rows": sum(m.get("rows") or 0 for m in published),
        "rewrite_seconds": round(sum(m["rewrite_seconds"] for m in published), 3),
        "verify_seconds": round(sum(m.get("verify_seconds", 0.0) for m in published), 3),
        "publish_seconds": round(sum(m["publish_seconds"] for m in published), 3),
    }


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Render dicts as a fixed-width text table for task logs."""
    if not rows:
        return "(nothing)"
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
