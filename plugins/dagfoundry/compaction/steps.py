"""The steps a ``lake_compaction`` DAG chains, as plain functions returning JSON-safe dicts.

::

    plan_step ──> [SparkSubmitOperator compaction_rewrite  ──> publish_step] per batch ──> report_step ──> cleanup_step
                   (mapped over plan["spark_args"])            (mapped over plan["batch_files"])
    rollback_step (when the ``rollback`` Param names partitions; nothing else runs)

Every step is idempotent: re-running one after a crash or a retry finishes or reports the
same work, never redoes a published partition.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from dagfoundry.compaction.journal import load_journal, stage_plan
from dagfoundry.compaction.layout import journals_under, make_version
from dagfoundry.compaction.maintenance import cleanup, rollback_partition
from dagfoundry.compaction.metrics import format_table, run_summary
from dagfoundry.compaction.planner import CompactionPlanError, plan_compaction, resolve_tables
from dagfoundry.compaction.publisher import CompactionVerificationError, PartitionChangedError, publish_partition
from dagfoundry.compaction.recovery import recover_table
from dagfoundry.compaction.settings import CompactionSettings

log = logging.getLogger(__name__)

#: Partitions of a batch verified and published at once (each verification is one DuckDB
#: of :data:`~dagfoundry.compaction.verification.THREADS` threads and its memory cap).
PARTITIONS_PUBLISHED_AT_ONCE = max(1, min(2, os.cpu_count() or 1))

PLAN_COLUMNS = ["table", "partition", "chosen", "files", "bytes", "small_files", "target_files", "reason"]
METRIC_COLUMNS = ["key", "status", "rows", "files_before", "files_after", "files_ideal", "bytes_before", "bytes_after",
                  "avg_file_bytes_after", "late_files", "rewrite_seconds", "verify_seconds", "publish_seconds"]


def new_version(run_id: str) -> str:
    """Return this run's version name (UTC start time, then the run id)."""
    return make_version(run_id, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S"))


def plan_step(settings: CompactionSettings, *, version: str, dry_run: bool = False, now: float | None = None) -> dict:
    """Recover crashed runs, choose partitions, stage batch files for Spark; return the plan.

    :param settings: the job's settings
    :param version: this run's version (:func:`new_version`); pass the same one on retries
    :param dry_run: only list and decide: no recovery, no staging, empty ``batch_files``
    :param now: current epoch seconds (tests)
    :return: the plan (see :meth:`CompactionPlan.to_dict`) plus ``batch_files`` (one per
        Spark application), ``spark_args`` (``[[batch_file], ...]`` for
        ``SparkSubmitOperator.partial(...).expand(application_args=...)``), ``recovered``
    """
    tables = resolve_tables(settings)
    recovered = [] if dry_run else [
        action
        for table in tables
        for action in recover_table(settings.lake_root, table,
                                    abandon_after_seconds=settings.abandon_staging_after_seconds, now=now)
    ]
    plan = plan_compaction(settings, version=version, now=now)
    summary = plan.to_dict()
    log.info("compaction plan %s%s:\n%s", version, " (dry run: nothing will change)" if dry_run else "",
             format_table(summary["decisions"], PLAN_COLUMNS))
    batch_files = [] if dry_run else stage_plan(plan, settings)
    return {**summary, "dry_run": dry_run, "recovered": recovered, "batch_files": batch_files,
            "spark_args": [[f] for f in batch_files]}


def publish_step(batch_file: str) -> dict:
    """Verify and publish every partition of one batch after its Spark application ran.

    Partitions that verify are published even when others in the batch fail; then the step
    raises, naming every failure with its figures.

    :param batch_file: one entry of ``plan["batch_files"]``
    :return: ``{"batch_file", "partitions": [metrics, ...]}``
    :raises CompactionVerificationError: a partition's old and new content differ
    :raises PartitionChangedError: a partition changed after planning, or no result exists
    """
    batch = json.loads(Path(batch_file).read_text())
    result_path = Path(batch["result_path"])
    if not result_path.is_file():
        raise PartitionChangedError(
            f"batch {batch_file}: the Spark application left no result at {result_path}; "
            "run the rewrite task for this batch before publishing"
        )
    figures = {p["key"]: p for p in json.loads(result_path.read_text())["partitions"]}
    # Partitions are independent (a lock, a journal and a directory each), and verifying one
    # reads thousands of small files on about one core: several at once use every core.
    with ThreadPoolExecutor(max_workers=PARTITIONS_PUBLISHED_AT_ONCE) as pool:
        outcomes = list(pool.map(partial(_publish_entry, figures), batch["partitions"]))
    failures = [f"{m['key']}: {m.get('reason', m.get('status'))}" for m in outcomes if m.get("status") != "published"]
    outcomes = [m for m in outcomes if m.get("status") != "missing"]
    log.info("batch %s:\n%s", batch_file, format_table(outcomes, METRIC_COLUMNS))
    if failures:
        error = CompactionVerificationError if any("content differs" in f or "schema differs" in f
                                                    for f in failures) else PartitionChangedError
        raise error(f"{len(failures)} partition(s) of {batch_file} not published:\n" + "\n".join(failures))
    return {"batch_file": batch_file, "partitions": outcomes}


def _publish_entry(figures: dict, entry: dict) -> dict:
    """Verify and publish one partition of a batch; return its metrics (a failure's reason included)."""
    journal = load_journal(Path(entry["journal"]))
    if journal is None:
        return {"key": entry["key"], "status": "missing", "reason": f"journal {entry['journal']} is missing (cleaned up?)"}
    try:
        return publish_partition(journal, figures.get(entry["key"], {"ok": False}))
    except (CompactionVerificationError, PartitionChangedError) as exc:
        return {"key": entry["key"], "status": "discarded", "reason": str(exc)}


def report_step(settings: CompactionSettings, *, version: str) -> dict:
    """Collect the run's per-partition metrics from its journals (even of failed batches).

    :return: ``{"version", "summary", "partitions"}``; the summary suits an Asset event's extra
    """
    partitions = []
    for table in resolve_tables(settings):
        for path in journals_under(settings.lake_root, table):
            journal = load_journal(path)
            if journal is not None and journal.version == version:
                partitions.append(journal.metrics or {"key": journal.key, "status": journal.state})
    report = {"version": version, "summary": run_summary(partitions), "partitions": partitions}
    log.info("compaction run %s: %s\n%s", version, report["summary"], format_table(partitions, METRIC_COLUMNS))
    return report


def cleanup_step(settings: CompactionSettings, *, now: float | None = None) -> dict:
    """Purge expired trash, finished journals, abandoned staging and old plan files."""
    done = cleanup(settings, resolve_tables(settings), now=now)
    log.info("compaction cleanup: %s", done)
    return done


def rollback_step(settings: CompactionSettings, partitions: list[str], *, version: str) -> list[dict]:
    """Roll back each named partition (``<table>/<partition>``) to its pre-compaction files.

    :param partitions: partition keys as shown in the plan (``mirror/shop/orders/dt=2024-01-01``)
    :param version: name under which the current content is kept in the trash
    :raises CompactionPlanError: a key names no table of this job
    """
    tables = sorted(resolve_tables(settings), key=len, reverse=True)
    done = []
    for key in partitions:
        table = next((t for t in tables if key == t or key.startswith(t + "/")), None)
        if table is None:
            raise CompactionPlanError(f"rollback: {key!r} is not a partition of the tables {sorted(tables)}")
        done.append(rollback_partition(settings.lake_root, table, key[len(table) + 1:], version=version))
    return done
