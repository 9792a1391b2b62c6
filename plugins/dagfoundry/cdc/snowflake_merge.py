"""Apply landed change batches to a Snowflake mirror table with one idempotent MERGE.

The SQL is built by pure functions (testable without Snowflake); :func:`merge_landed_batches`
runs it through the Snowflake provider's ``SnowflakeHook``. pyarrow, pandas and snowflake are
imported inside functions, so a DAG factory may import this module at parse time.

Idempotence, without relying on a multi-statement transaction:

1. A watermark table (``DAGFOUNDRY_CDC_WATERMARKS(TARGET_TABLE, BATCH_ID, UPDATED_AT)``)
   holds the greatest batch merged into each target. Only batches above it are loaded, and the
   MERGE filters the staging rows against it again (a concurrent run may have advanced it).
2. Every target row carries ``_DF_BATCH_ID``/``_DF_SEQ`` of the event that wrote it; a MATCHED
   clause fires only for a strictly newer event. So re-running a MERGE changes nothing.
3. The watermark advances after the MERGE. A crash in between replays the same batches,
   which (2) makes harmless; a batch at or below the watermark is never applied again, which
   is what keeps a hard-deleted row deleted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.cdc import landing
from dagfoundry.errors import DagfoundryError

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_WATERMARK_TABLE = "DAGFOUNDRY_CDC_WATERMARKS"
DELETE_MODES = ("hard", "soft")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")
# Metadata kept on target rows: which event wrote the row, in emission order.
_TARGET_METADATA = (landing.OP, landing.BATCH_ID, landing.SEQ, landing.LSN, landing.SOURCE_TS_MS)
SOFT_DELETED = "_DF_DELETED"
SOFT_DELETED_AT = "_DF_DELETED_AT"
_EVENT_AT = "_DF_EVENT_AT"


class SnowflakeMergeError(DagfoundryError):
    """A landed batch cannot be merged into its Snowflake target (names target and reason)."""


@dataclass(frozen=True)
class MergePlan:
    """Quoted names and typed columns of one MERGE.

    :param target: quoted target table (``"DB"."SCHEMA"."ORDERS"``)
    :param target_key: the target's name as stored in the watermark table
    :param staging: quoted temporary staging table
    :param columns: source columns (upper-case names) with Snowflake types, in batch order
    :param keys: primary-key columns (upper-case names)
    :param delete_mode: ``hard`` (DELETE) or ``soft`` (flag the row)
    :param watermark: quoted watermark table
    """

    target: str
    target_key: str
    staging: str
    columns: tuple[tuple[str, str], ...]
    keys: tuple[str, ...]
    delete_mode: str
    watermark: str


def quote_identifier(name: str, *, what: str = "identifier") -> str:
    """Return an unquoted-style identifier as its quoted upper-case form, or raise.

    Only ``[A-Za-z_][A-Za-z0-9_$]*`` is accepted, so a name can never carry SQL; upper-casing
    keeps ``"ORDER_ID"`` equal to the unquoted ``order_id`` users will type in Snowflake.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise SnowflakeMergeError(
            f"{what} {name!r} is not a plain Snowflake identifier (letters, digits, _ and $; not starting with a digit)"
        )
    return f'"{name.upper()}"'


def quote_table(name: str, *, what: str = "table") -> str:
    """Quote ``table``, ``schema.table`` or ``database.schema.table``."""
    parts = name.split(".") if isinstance(name, str) else []
    if not 1 <= len(parts) <= 3:
        raise SnowflakeMergeError(f"{what} {name!r} must be table, schema.table or database.schema.table")
    return ".".join(quote_identifier(p, what=f"{what} {name!r} part") for p in parts)


def snowflake_type(arrow_type: pa.DataType, *, column: str = "?") -> str:
    """Map a landing column's Arrow type to the Snowflake type of staging and target columns."""
    import pyarrow as pa
    import pyarrow.types as t

    if t.is_integer(arrow_type):
        return "NUMBER(38,0)"
    if t.is_floating(arrow_type):
        return "FLOAT"
    if t.is_decimal(arrow_type):
        if arrow_type.precision > 38:
            raise SnowflakeMergeError(f"column {column!r}: decimal precision {arrow_type.precision} exceeds Snowflake's 38")
        return f"NUMBER({arrow_type.precision},{arrow_type.scale})"
    if t.is_boolean(arrow_type):
        return "BOOLEAN"
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return "VARCHAR"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type):
        return "BINARY"
    if t.is_date(arrow_type):
        return "DATE"
    if t.is_time(arrow_type):
        return "TIME"
    if t.is_timestamp(arrow_type):
        return "TIMESTAMP_TZ" if arrow_type.tz else "TIMESTAMP_NTZ"
    if arrow_type == pa.null():
        return "VARCHAR"  # a column that is null in every row of the batch
    raise SnowflakeMergeError(f"column {column!r}: Arrow type {arrow_type} has no Snowflake mapping here")


def plan_merge(
    *,
    target_table: str,
    schema: pa.Schema,
    key_columns: Sequence[str],
    delete_mode: str = "hard",
    watermark_table: str | None = None,
) -> MergePlan:
    """Validate names and types of a batch against the landing contract and build a plan."""
    if delete_mode not in DELETE_MODES:
        raise SnowflakeMergeError(f"target {target_table}: delete_mode {delete_mode!r} is not one of hard, soft")
    target = quote_table(target_table, what="target table")
    missing = [c for c in (*landing.REQUIRED_METADATA, *key_columns) if c not in schema.names]
    if missing:
        raise SnowflakeMergeError(f"target {target_table}: landed batch lacks columns {missing}")
    if not key_columns:
        raise SnowflakeMergeError(f"target {target_table}: no key columns to merge on")
    columns: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for field in schema:
        quote_identifier(field.name, what=f"target {target_table}: column")
        upper = field.name.upper()
        if upper in seen:
            raise SnowflakeMergeError(f"target {target_table}: columns {seen[upper]!r} and {field.name!r} collide in Snowflake as {upper}")
        seen[upper] = field.name
        columns.append((upper, snowflake_type(field.type, column=field.name)))
    schema_prefix = target.rsplit(".", 1)[0] + "." if "." in target else ""
    watermark = quote_table(watermark_table, what="watermark table") if watermark_table else schema_prefix + f'"{DEFAULT_WATERMARK_TABLE}"'
    staging_name = f"DAGFOUNDRY_STAGE_{uuid.uuid4().hex[:12].upper()}"
    return MergePlan(
        target=target,
        target_key=target.replace('"', ""),
        staging=f'"{staging_name}"',
        columns=tuple(columns),
        keys=tuple(k.upper() for k in key_columns),
        delete_mode=delete_mode,
        watermark=watermark,
    )


def _q(name: str) -> str:
    return f'"{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def source_columns(plan: MergePlan) -> list[tuple[str, str]]:
    """Return the plan's non-metadata columns."""
    metadata = {c.upper() for c in landing.METADATA_COLUMNS}
    return [(n, t) for n, t in plan.columns if n not in metadata]


def create_staging_sql(plan: MergePlan) -> str:
    """Return the DDL of the session-scoped staging table (every batch column)."""
    cols = ", ".join(f"{_q(n)} {t}" for n, t in plan.columns)
    return f"CREATE TEMPORARY TABLE {plan.staging} ({cols})"


def create_target_sql(plan: MergePlan) -> str:
    """Return ``CREATE TABLE IF NOT EXISTS`` for the target: source columns plus metadata."""
    types = dict(plan.columns)
    cols = [f"{_q(n)} {t}" for n, t in source_columns(plan)]
    cols += [f"{_q(m.upper())} {types[m.upper()]}" for m in _TARGET_METADATA]
    if plan.delete_mode == "soft":
        cols += [f"{_q(SOFT_DELETED)} BOOLEAN", f"{_q(SOFT_DELETED_AT)} TIMESTAMP_NTZ"]
    return f"CREATE TABLE IF NOT EXISTS {plan.target} ({', '.join(cols)})"


def create_watermark_sql(plan: MergePlan) -> str:
    """Return the DDL of the watermark table."""
    return (
        f"CREATE TABLE IF NOT EXISTS {plan.watermark} "
        '("TARGET_TABLE" VARCHAR NOT NULL, "BATCH_ID" NUMBER(38,0) NOT NULL, "UPDATED_AT" TIMESTAMP_NTZ)'
    )


def read_watermark_sql(plan: MergePlan) -> str:
    """Return the query of the target's watermark (-1 when nothing was merged yet)."""
    return f'SELECT COALESCE(MAX("BATCH_ID"), -1) FROM {plan.watermark} WHERE "TARGET_TABLE" = {_literal(plan.target_key)}'


def merge_sql(plan: MergePlan) -> str:
    """Return the MERGE of the staged batches into the target.

    The source keeps the latest event per key by emission order ``(_df_batch_id, _df_seq)``
    (``QUALIFY ROW_NUMBER()``, as Snowflake refuses a nondeterministic MERGE); matched rows
    change only for a strictly newer event; deletes of unknown keys insert nothing.
    """
    batch, seq, op = _q(landing.BATCH_ID.upper()), _q(landing.SEQ.upper()), _q(landing.OP.upper())
    keys = ", ".join(_q(k) for k in plan.keys)
    on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in plan.keys)
    names = [n for n, _ in plan.columns]
    select = ", ".join(f"s.{_q(n)}" for n in names)
    if plan.delete_mode == "soft":
        # fakesnow copies only plain columns into SET clauses, so derive the time here
        select += f", TO_TIMESTAMP_NTZ(s.{_q(landing.SOURCE_TS_MS.upper())}, 3) AS {_q(_EVENT_AT)}"
    newer = f"(t.{batch} IS NULL OR s.{batch} > t.{batch} OR (s.{batch} = t.{batch} AND s.{seq} > t.{seq}))"
    metadata = [m.upper() for m in _TARGET_METADATA]
    set_metadata = [f"{_q(m)} = s.{_q(m)}" for m in metadata]
    set_columns = [f"{_q(n)} = s.{_q(n)}" for n, _ in source_columns(plan) if n not in plan.keys]
    insert_cols = [n for n, _ in source_columns(plan)] + metadata
    insert_vals = [f"s.{_q(n)}" for n in insert_cols]
    if plan.delete_mode == "soft":
        on_delete = "UPDATE SET " + ", ".join(
            [*set_metadata, f"{_q(SOFT_DELETED)} = TRUE", f"{_q(SOFT_DELETED_AT)} = s.{_q(_EVENT_AT)}"]
        )
        set_columns += [f"{_q(SOFT_DELETED)} = FALSE", f"{_q(SOFT_DELETED_AT)} = NULL"]
        insert_cols.append(SOFT_DELETED)
        insert_vals.append("FALSE")
    else:
        on_delete = "DELETE"
    return (
        f"MERGE INTO {plan.target} AS t USING ("
        f"SELECT {select} FROM {plan.staging} AS s "
        f"WHERE s.{batch} > ({read_watermark_sql(plan)}) "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY s.{batch} DESC, s.{seq} DESC) = 1"
        f") AS s ON {on} "
        f"WHEN MATCHED AND s.{op} = 'd' AND {newer} THEN {on_delete} "
        f"WHEN MATCHED AND s.{op} <> 'd' AND {newer} THEN UPDATE SET {', '.join([*set_columns, *set_metadata])} "
        f"WHEN NOT MATCHED AND s.{op} <> 'd' THEN INSERT ({', '.join(_q(c) for c in insert_cols)}) "
        f"VALUES ({', '.join(insert_vals)})"
    )


def advance_watermark_sql(plan: MergePlan, batch_id: int) -> str:
    """Return the upsert that moves the target's watermark up to ``batch_id`` (never down)."""
    batch_id = int(batch_id)
    return (
        f"MERGE INTO {plan.watermark} AS w USING (SELECT {_literal(plan.target_key)} AS \"TARGET_TABLE\", "
        f'{batch_id} AS "BATCH_ID") AS s ON w."TARGET_TABLE" = s."TARGET_TABLE" '
        'WHEN MATCHED AND s."BATCH_ID" > w."BATCH_ID" THEN UPDATE SET "BATCH_ID" = s."BATCH_ID", '
        '"UPDATED_AT" = CURRENT_TIMESTAMP() '
        'WHEN NOT MATCHED THEN INSERT ("TARGET_TABLE", "BATCH_ID", "UPDATED_AT") '
        'VALUES (s."TARGET_TABLE", s."BATCH_ID", CURRENT_TIMESTAMP())'
    )


def read_landed_batches(lake_root: str | Path, source: str, table_id: str, batch_ids: Sequence[int]) -> pa.Table:
    """Read and concatenate landed batches (Parquet files; the manifest is skipped by name)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(landing.batch_path(Path(lake_root), source, table_id, b)) for b in batch_ids]
    return pa.concat_tables(tables, promote_options="default")


def merge_landed_batches(
    *,
    snowflake_conn_id: str,
    lake_root: str | Path,
    source: str,
    table_id: str,
    target_table: str,
    key_columns: Sequence[str] | None = None,
    delete_mode: str = "hard",
    watermark_table: str | None = None,
) -> dict[str, Any]:
    """Merge every landed batch above the target's watermark into the Snowflake target.

    :param snowflake_conn_id: Airflow connection of type ``snowflake``
    :param lake_root: lake root holding ``landing/``
    :param source: capture source name (Debezium ``topic.prefix``)
    :param table_id: ``schema.table`` of the source table
    :param target_table: ``[database.][schema.]table`` in Snowflake; created when absent
    :param key_columns: primary key; None reads it from the first batch's manifest
    :param delete_mode: ``hard`` deletes rows; ``soft`` sets ``_DF_DELETED``/``_DF_DELETED_AT``
    :param watermark_table: control table; default ``DAGFOUNDRY_CDC_WATERMARKS`` in the target's schema
    :return: ``{"target", "batches", "staged_rows", "merged", "watermark"}`` (JSON-safe, for XCom)
    :raises dagfoundry.errors.DataQualityError: when a batch to merge fails its quality checks
    """
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
    from snowflake.connector.pandas_tools import write_pandas

    from dagfoundry.cdc.quality import require_checked

    pending = landing.list_batches(Path(lake_root), source, table_id)
    result: dict[str, Any] = {"target": target_table, "batches": [], "staged_rows": 0, "merged": {}}
    if not pending:
        result["watermark"] = None
        return result
    if key_columns is None:
        key_columns = tuple(landing.read_manifest(Path(lake_root), source, table_id, pending[0])["key_columns"])
    hook = SnowflakeHook(snowflake_conn_id=snowflake_conn_id)
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        first = read_landed_batches(lake_root, source, table_id, pending[:1])
        plan = plan_merge(target_table=target_table, schema=first.schema, key_columns=key_columns,
                          delete_mode=delete_mode, watermark_table=watermark_table)
        cursor.execute(create_watermark_sql(plan))
        cursor.execute(read_watermark_sql(plan))
        row = cursor.fetchone()
        if row is None:
            raise SnowflakeMergeError(f"{target_table}: the watermark query returned no row")
        watermark = int(row[0])
        todo = [b for b in pending if b > watermark]
        result["watermark"] = watermark
        if not todo:
            return result
        # Only batches that passed their quality checks (a failing table's batches wait).
        require_checked(Path(lake_root), source, table_id, todo)
        rows = read_landed_batches(lake_root, source, table_id, todo)
        _refuse_truncate(rows, target_table, table_id)
        _refuse_unavailable(rows, target_table, table_id)
        plan = plan_merge(target_table=target_table, schema=rows.schema, key_columns=key_columns,
                          delete_mode=delete_mode, watermark_table=watermark_table)
        cursor.execute(create_target_sql(plan))
        cursor.execute(create_staging_sql(plan))
        frame = _to_frame(rows)
        write_pandas(conn, frame, plan.staging.strip('"'), quote_identifiers=True, use_logical_type=True)
        cursor.execute(merge_sql(plan))
        counts = cursor.fetchone() or ()
        names = [d[0] for d in cursor.description or ()]
        cursor.execute(advance_watermark_sql(plan, todo[-1]))
        cursor.execute(f"DROP TABLE IF EXISTS {plan.staging}")
    finally:
        conn.close()
    result.update(batches=todo, staged_rows=rows.num_rows, merged=dict(zip(names, (int(c) for c in counts), strict=True)),
                  watermark=todo[-1])
    return result


def _refuse_truncate(rows: pa.Table, target_table: str, table_id: str) -> None:
    """Fail on a TRUNCATE marker: the MERGE applies keyed events only."""
    import pyarrow.compute as pc

    if pc.any(pc.equal(rows.column(landing.OP), landing.TRUNCATE_OP)).as_py():
        raise SnowflakeMergeError(
            f"{target_table}: the source table {table_id} was truncated; truncate {target_table} in Snowflake, "
            "set its watermark to the marker's batch and re-snapshot the table (the MERGE does not apply truncates)"
        )


def _refuse_unavailable(rows: pa.Table, target_table: str, table_id: str) -> None:
    """Fail on values Debezium did not send (unchanged TOAST): the MERGE would write NULL."""
    if landing.UNAVAILABLE in rows.column_names and rows.column(landing.UNAVAILABLE).null_count < rows.num_rows:
        counts = landing.count_unavailable_values(rows)
        raise SnowflakeMergeError(
            f"{target_table}: {table_id} has updates without the unchanged TOASTed values of {sorted(counts)} "
            f"({counts}); the MERGE would overwrite them with NULL. Set REPLICA IDENTITY FULL on the source table "
            "(capture.replica_identity_full) and re-snapshot it; the lake mirror carries such values forward"
        )


def _to_frame(rows: pa.Table):
    import pandas as pd

    # Arrow-backed columns keep nullable 64-bit integers and decimals exact on their way in.
    frame = rows.to_pandas(types_mapper=pd.ArrowDtype)
    frame.columns = [c.upper() for c in frame.columns]
    return frame
