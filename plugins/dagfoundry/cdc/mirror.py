"""Keep each captured table's lake mirror equal to the source as of the last landed batch.

A mirror is ``<lake_root>/mirror/<source>/<schema>.<table>/``: Parquet files with the
source columns plus ``_df_batch_id``, ``_df_seq``, ``_df_lsn`` and ``_df_source_ts_ms`` of
the event that produced each row, and ``_dagfoundry_mirror.json`` recording the last
applied batch. An update runs in three steps so a DAG can run the middle one on either
engine (``engine: duckdb`` in the task, ``engine: spark`` through ``SparkSubmitOperator``):

1. :func:`prepare_mirror_plan` lists, per table, the batches after the mirror's last
   applied batch and writes a plan file (returns its path, or None when nothing is new)
   holding, per table, the one Spark SQL query that builds its new mirror
   (:mod:`dagfoundry.cdc.mirror_sql`) and the views it reads;
2. an engine runs the plan and writes new mirrors to staging plus the plan's result file:
   the Spark application ``include/spark/cdc_mirror.py <plan>``, or
   :func:`dagfoundry.cdc.duckdb_mirror.run_mirror_plan` (the query transpiled to DuckDB);
3. :func:`publish_mirror_plan` verifies each staged mirror (row counts from the Parquet
   footers against the job's result, the plan's base still live) and publishes it
   atomically: readers see the previous mirror or the new one, never a mix. It does not
   care which engine staged it.

:func:`update_mirrors` runs all three.

Fault injection (tests): ``DAGFOUNDRY_CDC_MIRROR_FAILPOINT=<point>[@<schema.table>]`` makes
the process die by SIGKILL at ``after_stage`` (the Spark driver or the DuckDB task, once that
table is staged)
or ``after_publish`` (this process, once that table is published, before the next one).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.cdc import landing
from dagfoundry.errors import DagfoundryError, LakePublishError
from dagfoundry.lake import failpoints
from dagfoundry.lake.dialects import ENGINES
from dagfoundry.lake.publish import STAGING_DIR, LakeLocation, publish_directory

if TYPE_CHECKING:
    from dagfoundry.cdc.source_schema import SourceTable
    from dagfoundry.lake.duckdb_engine import DuckDBSettings

MIRROR_DIR = "mirror"
MIRROR_METADATA_FILE = "_dagfoundry_mirror.json"
PLANS_DIR = "cdc-mirror-plans"
#: the engines that run a mirror plan
#: fail points for tests (see the module docstring); the Spark application reads it too
FAILPOINT_ENV = "DAGFOUNDRY_CDC_MIRROR_FAILPOINT"
_TARGET_FILE_BYTES = 128 * 1024 * 1024
#: the result file's key naming the engine that wrote it (the others are table ids)
RESULT_ENGINE_KEY = "_engine"


class MirrorError(DagfoundryError):
    """A mirror could not be built or failed verification; the live mirror is unchanged."""


def mirror_location(lake_root: Path, source: str, table_id: str) -> LakeLocation:
    """Return the publishable location of a table's mirror."""
    return LakeLocation(Path(lake_root), f"{MIRROR_DIR}/{source}/{table_id}")


def read_mirror_state(lake_root: Path, source: str, table_id: str) -> dict | None:
    """Return the live mirror's metadata (``last_batch_id``, ``row_count``...), or None."""
    path = mirror_location(lake_root, source, table_id).live / MIRROR_METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def prepare_mirror_plan(
    lake_root: Path, source: str, tables: Sequence[str] | None = None, *, max_rows: int | None = None
) -> str | None:
    """Write the Spark plan for every table with new batches; return its path or None.

    Every planned batch has passed its quality checks: a batch without a quality record
    (landed just before a crash) is checked here first. A table whose batches fail is left
    out of the plan (its batches stay unmirrored and are checked again next time), the
    others are planned; the plan file lists it under ``failed_tables`` and
    :func:`publish_mirror_plan` reports it. :func:`plan_mirrors` also returns the failures
    when nothing else is planned.

    :param lake_root: the lake's root directory
    :param source: the capture's source name
    :param tables: ``schema.table`` ids; all landed tables of the source when None
    :param max_rows: the quality check's bound on a batch's rows
    """
    return plan_mirrors(lake_root, source, tables, max_rows=max_rows)[0]


def plan_mirrors(
    lake_root: Path, source: str, tables: Sequence[str] | None = None, *, max_rows: int | None = None
) -> tuple[str | None, dict[str, str]]:
    """Write the mirror plan (see :func:`prepare_mirror_plan`); return its path and the failed tables.

    :return: (the plan's path or None when no table is planned, ``{table: reason}`` of the
        tables left out because a batch failed its quality checks)
    """
    from dagfoundry.cdc.mirror_sql import plan_table_query
    from dagfoundry.cdc.offsets import read_mirror_floor
    from dagfoundry.cdc.quality import quality_failure, require_checked
    from dagfoundry.errors import DataQualityError

    lake_root = Path(lake_root)
    failed: dict[str, str] = {}
    plan_id = uuid.uuid4().hex
    floor = read_mirror_floor(lake_root, source)
    entries = []
    for table_id in tables if tables is not None else landing.list_landed_tables(lake_root, source):
        state = read_mirror_state(lake_root, source, table_id)
        previous = state["last_batch_id"] if state else None
        if floor is not None and state and state["last_batch_id"] < floor:
            state = None  # built before an offsets reset: rebuild from the floor (deletes were missed)
        after = max(previous or 0, floor - 1) if floor is not None and state is None else previous
        batches = landing.list_batches(lake_root, source, table_id, after=after)
        if not batches:
            continue
        try:
            require_checked(lake_root, source, table_id, batches, max_rows=max_rows)
        except DataQualityError as exc:
            failed[table_id] = quality_failure(table_id, exc)
            continue
        last_manifest = landing.read_manifest(lake_root, source, table_id, batches[-1])
        location = mirror_location(lake_root, source, table_id)
        batch_paths = [landing.batch_path(lake_root, source, table_id, b) for b in batches]
        input_bytes = sum(p.stat().st_size for d in batch_paths for p in d.glob("*.parquet"))
        if state:
            input_bytes += sum(p.stat().st_size for p in location.live.glob("*.parquet"))
        mirror_path = str(location.live) if state else None
        key_columns = last_manifest["key_columns"]
        columns = [c for c in last_manifest["columns"] if c not in landing.METADATA_COLUMNS]
        entries.append(
            {
                "table_id": table_id,
                "mirror_path": mirror_path,
                "previous_batch_id": previous,
                "last_batch_id": batches[-1],
                "batch_ids": batches,
                "batch_paths": [str(p) for p in batch_paths],
                "key_columns": key_columns,
                "columns": columns,
                "staging_path": str(location.staging(f"{plan_id}")),
                "files": max(1, -(-input_bytes // _TARGET_FILE_BYTES)),
                # the job itself: views over the inputs and the one query both engines run
                **plan_table_query(table_id, mirror_path, _group_by_schema(batch_paths), key_columns, columns),
            }
        )
    if not entries:
        return None, failed
    plans = lake_root / STAGING_DIR / PLANS_DIR
    plans.mkdir(parents=True, exist_ok=True)
    plan_path = plans / f"{source}-{plan_id}.json"
    plan = {"source": source, "lake_root": str(lake_root), "tables": entries, "failed_tables": failed,
            "result_path": str(plans / f"{source}-{plan_id}.result.json")}
    plan_path.write_text(json.dumps(plan, indent=1))
    return str(plan_path), failed


def _group_by_schema(batch_paths: Sequence[Path]) -> list[list[str]]:
    """Return the batch directories grouped by Parquet schema (first appearance order).

    Each group is one view of the mirror query, whose casts widen types across groups: a
    column widened in the source between two batches must not stop the mirror.
    """
    import pyarrow.parquet as pq

    groups: dict[tuple, list[str]] = {}
    for path in batch_paths:
        files = sorted(Path(path).glob("*.parquet"))
        schema = pq.read_schema(files[0]) if files else None
        signature = tuple((f.name, str(f.type)) for f in schema) if schema is not None else ()
        groups.setdefault(signature, []).append(str(path))
    return list(groups.values())


def publish_mirror_plan(plan_path: str | None) -> dict:
    """Verify and publish the mirrors an engine staged for ``plan_path``; return a summary.

    :param plan_path: what :func:`prepare_mirror_plan` returned (None: nothing to do)
    :return: ``{"engine": "duckdb"|"spark"|None, "tables": {table_id: {"last_batch_id", "row_count",
        "batches_applied", "unavailable_values", "engine"}}, "failed_tables": {table_id: reason}}``;
        ``unavailable_values`` counts, per column, the mirror rows whose value Debezium never
        sent (still null and listed in ``_df_unavailable``)
    :raises MirrorError: when a staged mirror is missing, its row count disagrees, or the
        live mirror moved since the plan was made (another run published)
    """
    if plan_path is None:
        return {"engine": None, "tables": {}, "failed_tables": {}}
    import pyarrow.parquet as pq

    plan = json.loads(Path(plan_path).read_text())
    lake_root, source = Path(plan["lake_root"]), plan["source"]
    result_file = Path(plan["result_path"])
    if not result_file.is_file():
        raise MirrorError(f"mirror plan {plan_path}: the mirror job left no result at {result_file}; did it run?")
    results = json.loads(result_file.read_text())
    engine = results.pop(RESULT_ENGINE_KEY, None)
    summary: dict[str, dict] = {}
    for entry in plan["tables"]:
        table_id = entry["table_id"]
        staged = Path(entry["staging_path"])
        files = sorted(staged.glob("*.parquet"))
        if table_id not in results or not files:
            raise MirrorError(f"mirror {source}/{table_id}: nothing staged at {staged}")
        footer_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if footer_rows != results[table_id]["row_count"]:
            raise MirrorError(
                f"mirror {source}/{table_id}: staged files hold {footer_rows} rows, the job counted {results[table_id]['row_count']}"
            )
        state = read_mirror_state(lake_root, source, table_id)
        if (state["last_batch_id"] if state else None) != entry["previous_batch_id"]:
            raise MirrorError(
                f"mirror {source}/{table_id}: the live mirror moved to batch {state and state['last_batch_id']} "
                f"since the plan (based on {entry['previous_batch_id']}); run the mirror again"
            )
        unavailable = count_unavailable(files)
        metadata = {
            "source": source,
            "table": table_id,
            "last_batch_id": entry["last_batch_id"],
            "row_count": footer_rows,
            "key_columns": entry["key_columns"],
            "batches_applied": entry["batch_ids"],
            "unavailable_values": unavailable,
            "engine": engine,
        }
        (staged / MIRROR_METADATA_FILE).write_text(json.dumps(metadata, sort_keys=True))
        try:
            publish_directory(mirror_location(lake_root, source, table_id), staged, f"batch-{entry['last_batch_id']}-{staged.name}")
        except LakePublishError as exc:
            raise MirrorError(f"mirror {source}/{table_id}: {exc}") from exc
        failpoints.reach(FAILPOINT_ENV, "after_publish", table_id)
        summary[table_id] = {"last_batch_id": entry["last_batch_id"], "row_count": footer_rows,
                             "batches_applied": len(entry["batch_ids"]), "unavailable_values": unavailable,
                             "engine": engine}
    return {"engine": engine, "tables": summary, "failed_tables": dict(plan.get("failed_tables") or {})}


def count_unavailable(files: Sequence[Path]) -> dict[str, int]:
    """Count, per column, the mirror rows listing it in ``_df_unavailable`` (value never sent)."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for path in files:
        if landing.UNAVAILABLE not in pq.read_schema(path).names:
            continue
        for text in pq.read_table(path, columns=[landing.UNAVAILABLE]).column(0).drop_null().to_pylist():
            for column in json.loads(text):
                counts[column] = counts.get(column, 0) + 1
    return dict(sorted(counts.items()))


def publish_empty_mirrors(lake_root: Path, source: str, tables: Mapping[str, SourceTable]) -> list[str]:
    """Publish an empty mirror (with its schema) for each table without batches or mirror.

    A table empty at snapshot time has no events, so no batch and no mirror: readers would
    get "path not found" instead of an empty table. Its ``last_batch_id`` is 0, so its
    first batches are applied on top of it as usual.

    :return: the tables given an empty mirror
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dagfoundry.cdc.source_schema import arrow_type

    lake_root = Path(lake_root)
    made = []
    for table_id, table in sorted(tables.items()):
        location = mirror_location(lake_root, source, table_id)
        if location.live.exists() or landing.list_batches(lake_root, source, table_id):
            continue
        fields = [pa.field(c.name, arrow_type(c)) for c in table.columns]
        fields += [pa.field(name, pa.int64()) for name in (landing.BATCH_ID, landing.SEQ, landing.LSN, landing.SOURCE_TS_MS)]
        fields += [pa.field(landing.SPECIAL, pa.string()), pa.field(landing.UNAVAILABLE, pa.string())]
        staged = location.staging(f"empty-{uuid.uuid4().hex}")
        staged.mkdir(parents=True)
        pq.write_table(pa.schema(fields).empty_table(), staged / "part-00000.parquet")
        metadata = {"source": source, "table": table_id, "last_batch_id": 0, "row_count": 0,
                    "key_columns": list(table.primary_key), "batches_applied": []}
        (staged / MIRROR_METADATA_FILE).write_text(json.dumps(metadata, sort_keys=True))
        publish_directory(location, staged, f"empty-{staged.name}")
        made.append(table_id)
    return made


def update_mirrors(
    lake_root: Path,
    source: str,
    *,
    tables: Sequence[str] | None = None,
    engine: str = "duckdb",
    duckdb: Mapping[str, object] | DuckDBSettings | None = None,
    conn_id: str = "spark_local",
    conf: Mapping[str, str] | None = None,
    max_rows: int | None = None,
) -> dict:
    """Plan, run the plan on ``engine`` and publish; return the summary.

    A table failing its quality checks is not mirrored and is listed in ``failed_tables``;
    nothing is raised for it (:func:`dagfoundry.cdc.tasks.report_capture_health` fails).

    :param engine: ``duckdb`` (in this process, bounded by ``duckdb``) or ``spark``
        (``spark-submit`` through the provider's ``SparkSubmitHook``)
    :param duckdb: the embedded engine's bounds (a ``duckdb:`` block's settings)
    :param conn_id: the Airflow Spark connection (``local[*]`` by default; engine spark)
    :param conf: extra Spark settings (engine spark)
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown mirror engine {engine!r}: expected one of {', '.join(ENGINES)}")
    plan_path, failed = plan_mirrors(lake_root, source, tables, max_rows=max_rows)
    if plan_path is None:
        return {"engine": None, "tables": {}, "failed_tables": failed}
    run_mirror_plan(plan_path, engine=engine, duckdb=duckdb, conn_id=conn_id, conf=conf)
    return publish_mirror_plan(plan_path)


def run_mirror_plan(
    plan_path: str,
    *,
    engine: str = "duckdb",
    duckdb: Mapping[str, object] | DuckDBSettings | None = None,
    conn_id: str = "spark_local",
    conf: Mapping[str, str] | None = None,
) -> dict:
    """Run a plan's queries on ``engine`` (staged mirrors and the result file); return the result.

    :return: the plan's result file (``{table_id: {"row_count", ...}, "_engine": engine}``)
    """
    if engine == "duckdb":
        from dagfoundry.cdc.duckdb_mirror import run_duckdb_mirror
        from dagfoundry.lake.duckdb_engine import DuckDBSettings

        settings = duckdb if isinstance(duckdb, DuckDBSettings) else DuckDBSettings.from_dict(duckdb)
        return run_duckdb_mirror(plan_path, settings)
    from dagfoundry.spark_submit import submit_spark_app

    submit_spark_app("cdc_mirror", [plan_path], conn_id=conn_id, conf=conf)
    return json.loads(Path(json.loads(Path(plan_path).read_text())["result_path"]).read_text())
