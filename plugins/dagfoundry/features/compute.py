"""Run the feature Spark job for a range of feature dates and publish its partitions.

Three steps a DAG chains (each returns a JSON-safe dict for XCom):

1. :func:`prepare_feature_job` plans the dates (source readiness), generates the job's one
   query (:mod:`dagfoundry.features.feature_sql`), writes the job file and returns the Spark
   application arguments;
2. the engine runs the query: DuckDB in the task's process (``engine: duckdb``, the default:
   :func:`run_feature_job`), or Spark with ``include/spark/feature_compute.py`` and those
   arguments (``engine: spark``: ``SparkSubmitOperator``, or :func:`run_feature_job`);
3. :func:`publish_feature_job` verifies the staged partitions and publishes each date
   atomically at ``<lake_root>/features/<view>/feature_date=YYYY-MM-DD``.

A job stages under ``<lake_root>/_staging/features/<view>/<version>``; publish removes it, and a
job that failed before publishing leaves it behind. So ``prepare`` first sweeps the view's
staging (:func:`sweep_staging`): it removes the folders of earlier attempts of its own chunk
(the version starts with the chunk's owner key: run id and dates) and any folder in which
nothing was written for ``stale_after``. Folders of other runs' chunks that are still
being written are kept, so parallel backfill runs never remove each other's work.

:func:`compute_feature_range` does all three in one call. Standard library at import time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from dagfoundry.errors import DagfoundryError
from dagfoundry.features.definition import FeatureViewDefinition
from dagfoundry.features.source_readiness import feature_dates, plan_feature_dates
from dagfoundry.lake.publish import STAGING_DIR, LakeLocation, publish_directory

SPARK_APP = "feature_compute"
PART_FILE = "part-00000.parquet"
#: Staging in which nothing was written for this long belongs to a job that died.
STALE_STAGING_AFTER = dt.timedelta(hours=24)

log = logging.getLogger(__name__)


class FeatureComputeError(DagfoundryError):
    """The feature job's output is incomplete or inconsistent; nothing was published for it."""


def offline_path(lake_root: str | Path, view: str) -> Path:
    """Return the offline store directory of a view: ``<lake_root>/features/<view>``."""
    return Path(lake_root) / "features" / view


def partition_relative(view: str, feature_date: str) -> str:
    return f"features/{view}/feature_date={feature_date}"


def owner_key(run_id: str, start: str | dt.date, end: str | dt.date) -> str:
    """Return the staging owner of one chunk of one DAG run (a file-name-safe run id plus the dates).

    Airflow runs one attempt of a task at a time, so a new ``prepare`` of the same owner means
    the earlier attempts of that chunk are over.
    """
    return f"{re.sub(r'[^A-Za-z0-9_+-]', '_', run_id)}__{start}_{end}"


def new_version(owner: str | None = None) -> str:
    """Return a version name unique per attempt: ``[<owner>.]<UTC time>-<random>``."""
    unique = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    return f"{owner}.{unique}" if owner else unique


def staging_root(lake_root: str | Path, view: str) -> Path:
    """Return the directory under which the view's jobs stage: ``<lake_root>/_staging/features/<view>``."""
    return Path(lake_root) / STAGING_DIR / "features" / view


def _last_written(folder: Path) -> float:
    """Return the newest mtime in ``folder``'s tree (Spark writes deep under ``output/_temporary``)."""
    newest = folder.stat().st_mtime
    for directory, _, files in os.walk(folder):
        for name in [".", *files]:
            try:
                newest = max(newest, os.stat(os.path.join(directory, name)).st_mtime)
            except FileNotFoundError:  # Spark renamed it meanwhile: the folder is live
                return time.time()
    return newest


def sweep_staging(lake_root: str | Path, view: str, owner: str | None, *,
                  stale_after: dt.timedelta = STALE_STAGING_AFTER, now: float | None = None) -> list[str]:
    """Remove the view's staging folders of earlier attempts of ``owner`` and the stale ones.

    :param owner: the chunk about to stage (:func:`owner_key`); None removes only stale folders
    :param stale_after: a folder with nothing written for this long belongs to a dead job
    :return: the names of the folders removed
    """
    base = staging_root(lake_root, view)
    if not base.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        own = owner is not None and folder.name.startswith(owner + ".")
        if own or now - _last_written(folder) >= stale_after.total_seconds():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.warning("feature view %s: removed staging left by failed jobs: %s", view, ", ".join(removed))
    return removed


def chunk_ranges(start: str | dt.date, end: str | dt.date, chunk_days: int) -> list[dict[str, str]]:
    """Split ``[start, end]`` into consecutive ranges of at most ``chunk_days`` dates.

    For a chunked backfill: one Spark job (one mapped task) per chunk, in date order.

    :return: ``[{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}, ...]`` (JSON-safe, for ``expand``)
    :raises ValueError: when ``chunk_days`` < 1 or the range is reversed
    """
    if chunk_days < 1:
        raise ValueError(f"chunk_days must be >= 1, got {chunk_days}")
    days = feature_dates(start, end)
    return [
        {"start": days[i].isoformat(), "end": days[min(i + chunk_days, len(days)) - 1].isoformat()}
        for i in range(0, len(days), chunk_days)
    ]


def prepare_feature_job(
    defn: FeatureViewDefinition,
    lake_root: str | Path,
    start: str | dt.date,
    end: str | dt.date,
    *,
    version: str | None = None,
    owner: str | None = None,
    stale_after: dt.timedelta = STALE_STAGING_AFTER,
) -> dict[str, Any]:
    """Sweep staging left by failed jobs, plan the dates of ``[start, end]``, write the Spark job file.

    :param defn: the feature view
    :param lake_root: the lake's root directory (features and staging live under it)
    :param start: first feature date, included (``YYYY-MM-DD``)
    :param end: last feature date, included
    :param version: name of this attempt's output; a fresh one (under ``owner``) by default
    :param owner: the chunk's staging owner (:func:`owner_key`): earlier attempts of it are removed
    :param stale_after: staging of the view with nothing written for this long is removed
    :return: ``{"view", "lake_root", "version", "job_file", "output", "dates", "skipped",
        "application_args", "staging_removed"}``; ``dates`` may be empty (then skip the Spark step)
    :raises SourcePartitionMissingError: when a ``fail``/``wait`` source lacks partitions
    """
    plan = plan_feature_dates(defn, start, end)
    removed = sweep_staging(lake_root, defn.name, owner, stale_after=stale_after)
    version = version or new_version(owner)
    work = staging_root(lake_root, defn.name) / version
    work.mkdir(parents=True, exist_ok=True)
    output = work / "output"
    job_file = work / "job.json"
    definition = defn.to_dict()
    query = feature_job_query(definition, list(plan.dates), work) if plan.dates else None
    job_file.write_text(
        json.dumps({"definition": definition, "dates": list(plan.dates), "output": str(output), "query": query},
                   sort_keys=True),
        encoding="utf-8",
    )
    return {
        "view": defn.name,
        "lake_root": str(lake_root),
        "version": version,
        "job_file": str(job_file),
        "output": str(output),
        "dates": list(plan.dates),
        "skipped": list(plan.skipped),
        "application_args": ["--job", str(job_file)],
        "staging_removed": removed,
    }


def feature_job_query(definition: dict[str, Any], dates: list[str], work: Path) -> str:
    """Return the job's query in Spark SQL, typed from the sources' schemas (read with DuckDB)."""
    from dagfoundry.features.duckdb_compute import register_sources, value_types
    from dagfoundry.features.feature_sql import feature_query
    from dagfoundry.lake.duckdb_engine import DuckDBSettings, connect

    conn = connect(DuckDBSettings(memory_limit="256MB", threads=1), work)
    try:
        register_sources(conn, definition)
        return feature_query(definition, dates, value_types(conn, definition))
    finally:
        conn.close()


def run_feature_job(
    job: dict[str, Any],
    *,
    engine: str = "duckdb",
    conn_id: str = "spark_local",
    conf: dict[str, str] | None = None,
    duckdb: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a prepared job's query on ``engine`` and write its staged output.

    :param engine: ``duckdb`` (in this process, bounded by ``duckdb``) or ``spark`` (the
        application through the provider's spark-submit hook, with ``conn_id`` and ``conf``)
    :return: ``{"engine", "seconds", ...}``
    """
    started = time.perf_counter()
    if not job["dates"]:
        return {"engine": engine, "seconds": 0.0, "rows": 0}
    if engine == "duckdb":
        from dagfoundry.features.duckdb_compute import run_duckdb_job
        from dagfoundry.lake.duckdb_engine import DuckDBSettings

        return run_duckdb_job(job["job_file"], DuckDBSettings.from_dict(duckdb))
    if engine != "spark":
        raise ValueError(f"unknown engine {engine!r}: expected duckdb or spark")
    from dagfoundry.spark_submit import submit_spark_app

    submit_spark_app(SPARK_APP, job["application_args"], conn_id=conn_id, conf=conf)
    return {"engine": "spark", "seconds": round(time.perf_counter() - started, 3)}


def _rewrite_deterministically(source: Path, target: Path, *, empty: bool = False,
                               sort_keys: tuple[str, ...] = ()) -> None:
    """Write ``source``'s rows (none when ``empty``) to ``target`` with pyarrow.

    Spark's Parquet writer lists column encodings in hash order, so two runs with equal
    rows can differ in bytes; pyarrow's writer is deterministic, which makes a daily run
    and a backfill byte-identical.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    if empty:
        table = table.schema.empty_table()
    elif sort_keys:
        # Rows in key order whatever order the engine wrote them in: equal rows, equal bytes.
        table = table.sort_by([(key, "ascending") for key in sort_keys])
    # Spark's own footer keys describe its file, not this one; and every column is nullable
    # (engines differ in which results they can prove non-null), so equal rows give equal bytes.
    table = table.cast(pa.schema([field.with_nullable(True) for field in table.schema]))
    table = table.replace_schema_metadata(None)
    pq.write_table(table, target, compression="snappy", write_statistics=True)


def _stage_partition(output: Path, feature_date: str, empty_file: Path | None, keys: tuple[str, ...] = ()) -> Path:
    """Return a staged directory of one date holding exactly ``part-00000.parquet``."""
    written = output / f"feature_date={feature_date}"
    staged = output / "_publish" / f"feature_date={feature_date}"
    # A retried publish starts over from Spark's output, which it never moves.
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    if not written.is_dir():
        if empty_file is None:
            raise FeatureComputeError(f"staged output {output} has neither {written.name} nor an empty schema file")
        _rewrite_deterministically(empty_file, staged / PART_FILE, empty=True)
        return staged
    parts = sorted(written.glob("part-*.parquet"))
    if len(parts) != 1:
        raise FeatureComputeError(f"staged partition {written} has {len(parts)} Parquet files, expected exactly 1")
    _rewrite_deterministically(parts[0], staged / PART_FILE, sort_keys=keys)
    return staged


def _check_columns(defn: FeatureViewDefinition, part: Path) -> None:
    import pyarrow.parquet as pq

    expected = [*defn.entity_keys, *(f.name for f in defn.features)]
    found = pq.read_schema(part).names
    if found != expected:
        raise FeatureComputeError(
            f"feature view {defn.name!r}: staged file {part} has columns {found}, expected {expected}"
        )


def publish_feature_job(defn: FeatureViewDefinition, job: dict[str, Any]) -> dict[str, Any]:
    """Verify the staged output of a job and publish each feature date atomically.

    Every date of the job is published: a date without rows gets an empty file with the
    view's schema, so a re-run always replaces exactly its own partitions.

    :param defn: the feature view (the same as the job's)
    :param job: the dict :func:`prepare_feature_job` returned
    :return: ``{"view", "version", "published": [dates], "skipped": [dates], "latest": date | None}``
    :raises FeatureComputeError: when the staged output is incomplete (nothing is published)
    """
    output = Path(job["output"])
    dates: list[str] = job["dates"]
    if dates:
        expected = {f"feature_date={d}" for d in dates} | {"_empty", "_publish"}
        unexpected = sorted(p.name for p in output.iterdir() if p.is_dir() and p.name not in expected)
        if unexpected:
            raise FeatureComputeError(
                f"feature view {defn.name!r}: staged output {output} has partitions of no planned date: "
                f"{', '.join(unexpected[:5])}; nothing was published"
            )
        empties = sorted((output / "_empty").glob("part-*.parquet"))
        empty_file = empties[0] if empties else None
        staged = {d: _stage_partition(output, d, empty_file, tuple(defn.entity_keys)) for d in dates}
        for part_dir in staged.values():
            _check_columns(defn, part_dir / PART_FILE)
        for feature_date, part_dir in staged.items():
            location = LakeLocation(Path(job["lake_root"]), partition_relative(defn.name, feature_date))
            publish_directory(location, part_dir, job["version"])
    shutil.rmtree(Path(job["job_file"]).parent, ignore_errors=True)
    return {
        "view": defn.name,
        "version": job["version"],
        "published": dates,
        "skipped": list(job["skipped"]),
        "latest": max(dates) if dates else None,
    }


def compute_feature_range(
    defn: FeatureViewDefinition,
    lake_root: str | Path,
    start: str | dt.date,
    end: str | dt.date,
    *,
    engine: str = "duckdb",
    conn_id: str = "spark_local",
    conf: dict[str, str] | None = None,
    duckdb: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute and publish the feature dates ``[start, end]`` in one job on ``engine``.

    A daily run is ``start == end``; a chunked backfill is a longer range.

    :return: the dict of :func:`publish_feature_job`
    """
    job = prepare_feature_job(defn, lake_root, start, end)
    try:
        run_feature_job(job, engine=engine, conn_id=conn_id, conf=conf, duckdb=duckdb)
    except BaseException:
        shutil.rmtree(Path(job["job_file"]).parent, ignore_errors=True)
        raise
    return publish_feature_job(defn, job)
