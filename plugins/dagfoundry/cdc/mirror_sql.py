"""The mirror job as ONE Spark SQL query per table, generated at plan time for both engines.

:func:`plan_table_query` reads what the Spark code used to discover at run time from the
Parquet footers and one column (pyarrow, no engine): each input's schema (the live mirror
and every batch group with one schema), the common type of every column across them
(:func:`widest_type`; a pair no type holds both is refused here, before any engine starts)
and the columns some row flags in ``_df_unavailable``. From those it writes the query in
Spark SQL over views it names (``cdc_mirror_live``, ``cdc_batches_<i>``); Spark runs it as
written (``include/spark/cdc_mirror.py``), DuckDB runs it transpiled
(:mod:`dagfoundry.cdc.duckdb_mirror`, :func:`dagfoundry.lake.dialects.for_engine`).

The query's steps, as CTEs:

1. ``combined``: every input cast to the common types and aligned by name (a column an input
   lacks is a typed NULL; live mirror rows are not deletes), one ``UNION ALL``;
2. ``live``: rows after the latest TRUNCATE marker in emission order ``(_df_batch_id, _df_seq)``
   (the maximum batch of the markers, then their maximum seq in it), markers dropped;
3. ``carried`` (only when a column is flagged): a value Debezium did not send (unchanged TOAST)
   gets the key's latest earlier sent value: a running count of the rows that sent the column
   is a group id per key, and the group's first row is the one that sent it (an explicit NULL
   counts as sent). Without an earlier sent value the column stays null and stays listed in
   ``_df_unavailable``, written as landing writes it (``["a", "b"]``);
4. the latest row per key (``ROW_NUMBER`` by emission order, descending), deletes dropped.

Standard library at import time; pyarrow inside the functions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dagfoundry.cdc import landing
from dagfoundry.cdc.mirror import MirrorError

if TYPE_CHECKING:
    import pyarrow as pa

LIVE_VIEW = "cdc_mirror_live"
#: the event columns a mirror row keeps besides the source columns
MIRROR_METADATA = (landing.BATCH_ID, landing.SEQ, landing.LSN, landing.SOURCE_TS_MS)
_INTEGRAL_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}
_MAX_DECIMAL_PRECISION = 38


def batch_view(index: int) -> str:
    """Return the view name of the ``index``-th batch group."""
    return f"cdc_batches_{index}"


def q(name: str) -> str:
    """Quote an identifier for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def spark_literal(text: str) -> str:
    """Return ``text`` as a Spark SQL string literal (Spark reads backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def widest_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """Return the type both ``a`` and ``b`` cast to without loss, or None.

    Integers widen to the wider integer, integers and decimals to a decimal with the larger
    whole part and scale (at most 38 digits), floats with floats or integers to double, and
    anything with text to text (every value has a text form).
    """
    import pyarrow as pa
    import pyarrow.types as t

    if a == b:
        return a
    if t.is_signed_integer(a) and t.is_signed_integer(b):
        return a if a.bit_width >= b.bit_width else b
    if t.is_string(a) or t.is_string(b) or t.is_large_string(a) or t.is_large_string(b):
        return pa.string()  # a column retyped to text
    exact = (t.is_signed_integer, t.is_decimal)
    if any(f(a) for f in exact) and any(f(b) for f in exact):
        def whole_and_scale(x: pa.DataType) -> tuple[int, int]:
            return (x.precision - x.scale, x.scale) if t.is_decimal(x) else (_INTEGRAL_DIGITS[x.bit_width], 0)

        (wa, sa), (wb, sb) = whole_and_scale(a), whole_and_scale(b)
        scale = max(sa, sb)
        if max(wa, wb) + scale > _MAX_DECIMAL_PRECISION:
            return None
        return pa.decimal128(max(wa, wb) + scale, scale)
    numeric = (t.is_floating, t.is_signed_integer)
    if (t.is_floating(a) and any(f(b) for f in numeric)) or (t.is_floating(b) and t.is_signed_integer(a)):
        return pa.float64()
    return None


def spark_type(arrow_type: pa.DataType) -> str:
    """Return the Spark SQL name of an Arrow type as Spark reads it from Parquet.

    A timestamp without time zone is ``TIMESTAMP_NTZ`` (Spark reads Parquet's local
    timestamps so), with one ``TIMESTAMP``; Spark's ``simpleString`` spelling, lower case,
    is what error messages show.
    """
    import pyarrow.types as t

    if t.is_signed_integer(arrow_type):
        return {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[arrow_type.bit_width]
    if t.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    if t.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "TIMESTAMP_NTZ"
    if t.is_list(arrow_type) or t.is_large_list(arrow_type):
        return f"ARRAY<{spark_type(arrow_type.value_type)}>"
    simple = [(t.is_float32, "FLOAT"), (t.is_float64, "DOUBLE"), (t.is_boolean, "BOOLEAN"), (t.is_date32, "DATE"),
              (t.is_string, "STRING"), (t.is_large_string, "STRING"), (t.is_binary, "BINARY"),
              (t.is_large_binary, "BINARY")]
    for test, name in simple:
        if test(arrow_type):
            return name
    raise MirrorError(f"Arrow type {arrow_type} has no Spark SQL type in the mirror job")


def common_types(table_id: str, schemas: Sequence[pa.Schema]) -> dict[str, pa.DataType]:
    """Return every column's widest type across ``schemas``, in order of first appearance.

    A column widened in the source (``int`` → ``bigint``, ``numeric(10,2)`` → ``numeric(12,4)``)
    lands with another type after the ``ALTER``.

    :raises MirrorError: for a column whose types no type holds both
    """
    common: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            if field.name not in common:
                common[field.name] = field.type
                continue
            wider = widest_type(common[field.name], field.type)
            if wider is None:
                raise MirrorError(
                    f"table {table_id}: column {field.name} is {spark_type(common[field.name]).lower()} in some batches "
                    f"and {spark_type(field.type).lower()} in others, with no type holding both; re-snapshot the table "
                    "(reset_offsets) after such a change"
                )
            common[field.name] = wider
    return common


def mirror_query(
    table_id: str,
    inputs: Sequence[tuple[str, pa.Schema, bool]],
    key_columns: Sequence[str],
    columns: Sequence[str],
    flagged: Sequence[str] = (),
) -> tuple[str, pa.Schema]:
    """Return the Spark SQL building a table's new mirror, and the mirror's Arrow schema.

    :param inputs: ``(view, schema, is_live_mirror)`` per input, the live mirror first
    :param key_columns: the table's key
    :param columns: the source columns of the newest batch (the mirror's columns, in order)
    :param flagged: columns some input row lists in ``_df_unavailable``
    """
    import pyarrow as pa

    types = common_types(table_id, [schema for _, schema, _ in inputs])
    types.setdefault(landing.DELETED, pa.bool_())
    missing = [c for c in (*key_columns, landing.BATCH_ID, landing.SEQ, *MIRROR_METADATA) if c not in types]
    if missing:
        raise MirrorError(f"table {table_id}: landed batches lack columns {sorted(set(missing))}")
    selects = [_aligned_select(view, schema, is_live, types) for view, schema, is_live in inputs]
    ctes = ["combined AS (" + "\nUNION ALL\n".join(selects) + ")"]
    current = "combined"
    if landing.OP in types:
        ctes += _truncate_ctes()
        current = "live"
    output = [c for c in columns if c in types] + list(MIRROR_METADATA)
    output += [c for c in (landing.SPECIAL, landing.UNAVAILABLE) if c in types]
    flagged = sorted(c for c in set(flagged) if c in output and c not in key_columns and c in types)
    if flagged and landing.UNAVAILABLE in types:
        ctes += _carry_forward_ctes(current, list(types), key_columns, flagged)
        current = "carried"
    keys = ", ".join(q(k) for k in key_columns)
    order = f"{q(landing.BATCH_ID)} DESC, {q(landing.SEQ)} DESC"
    ctes.append(f"ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order}) AS _df_rank FROM {current})")
    body = f"SELECT {', '.join(q(c) for c in output)} FROM ranked WHERE _df_rank = 1 AND NOT {q(landing.DELETED)}"
    schema = pa.schema([pa.field(c, types[c], nullable=True) for c in output])
    return "WITH " + ",\n".join(ctes) + "\n" + body, schema


def _aligned_select(view: str, schema: pa.Schema, is_live: bool, types: dict[str, pa.DataType]) -> str:
    present = {f.name: f.type for f in schema}
    parts = []
    for name, wanted in types.items():
        if name in present:
            expr = q(name) if present[name] == wanted else f"CAST({q(name)} AS {spark_type(wanted)})"
        elif name == landing.DELETED and is_live:
            expr = "FALSE"  # a live mirror row is a present row
        else:
            expr = f"CAST(NULL AS {spark_type(wanted)})"
        parts.append(f"{expr} AS {q(name)}")
    return f"SELECT {', '.join(parts)} FROM {view}"


def _truncate_ctes() -> list[str]:
    """Keep the rows after the latest TRUNCATE marker (a marker: ``_df_op = 't'``, no key)."""
    batch, seq, op = q(landing.BATCH_ID), q(landing.SEQ), q(landing.OP)
    marker = spark_literal(landing.TRUNCATE_OP)
    return [
        f"marker_batch AS (SELECT MAX({batch}) AS _df_t_batch FROM combined WHERE {op} = {marker})",
        f"marker_seq AS (SELECT MAX(c.{seq}) AS _df_t_seq FROM combined c CROSS JOIN marker_batch m "
        f"WHERE c.{op} = {marker} AND c.{batch} = m._df_t_batch)",
        f"live AS (SELECT c.* FROM combined c CROSS JOIN marker_batch m CROSS JOIN marker_seq s "
        f"WHERE (m._df_t_batch IS NULL OR c.{batch} > m._df_t_batch OR (c.{batch} = m._df_t_batch AND c.{seq} > s._df_t_seq)) "
        f"AND (c.{op} IS NULL OR c.{op} <> {marker}))",
    ]


def _carry_forward_ctes(current: str, names: list[str], key_columns: Sequence[str], flagged: list[str]) -> list[str]:
    keys = ", ".join(q(k) for k in key_columns)
    order = f"{q(landing.BATCH_ID)}, {q(landing.SEQ)}"
    running = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    unavailable = q(landing.UNAVAILABLE)
    absent, sent, known = [], [], []
    replaced: dict[str, str] = {}
    unknown = []
    for i, column in enumerate(flagged):
        # Landing writes the list with json.dumps: each name appears as its JSON string.
        needle = spark_literal(json.dumps(column))
        absent.append(f"COALESCE(INSTR({unavailable}, {needle}) > 0, FALSE) AS _df_absent_{i}")
        sent.append(f"SUM(CASE WHEN _df_absent_{i} THEN 0 ELSE 1 END) OVER (PARTITION BY {keys} ORDER BY {order} {running}) "
                    f"AS _df_sent_{i}")
        known.append(f"FIRST_VALUE({q(column)}) OVER (PARTITION BY {keys}, _df_sent_{i} ORDER BY {order} {running}) "
                     f"AS _df_known_{i}")
        replaced[column] = (f"CASE WHEN NOT _df_absent_{i} THEN {q(column)} WHEN _df_sent_{i} > 0 THEN _df_known_{i} END")
        unknown.append(f"CASE WHEN _df_absent_{i} AND _df_sent_{i} = 0 THEN {spark_literal(json.dumps(column))} END")
    listed = f"CONCAT_WS(', ', {', '.join(unknown)})"
    replaced[landing.UNAVAILABLE] = f"CASE WHEN {listed} <> '' THEN CONCAT('[', {listed}, ']') END"
    outputs = ", ".join(f"{replaced.get(n, q(n))} AS {q(n)}" for n in names)
    return [
        f"flags AS (SELECT *, {', '.join(absent)} FROM {current})",
        f"sent AS (SELECT *, {', '.join(sent)} FROM flags)",
        f"known AS (SELECT *, {', '.join(known)} FROM sent)",
        f"carried AS (SELECT {outputs} FROM known)",
    ]


def parquet_files(directory: str | Path) -> list[str]:
    """Return the Parquet files of a directory (batch or mirror), sorted."""
    return sorted(str(p) for p in Path(directory).glob("*.parquet"))


def _schema_of(directories: Sequence[str]) -> pa.Schema:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [f for d in directories for f in parquet_files(d)]
    if not files:
        raise MirrorError(f"no Parquet files in {', '.join(directories)}")
    return pa.unify_schemas([pq.read_schema(files[0]).remove_metadata()] +
                            [pq.read_schema(f).remove_metadata() for f in files[1:]])


def flagged_columns(directories: Sequence[str]) -> set[str]:
    """Return the columns any row of these inputs lists in ``_df_unavailable`` (reads that column only)."""
    import pyarrow.parquet as pq

    found: set[str] = set()
    for path in (f for d in directories for f in parquet_files(d)):
        if landing.UNAVAILABLE not in pq.read_schema(path).names:
            continue
        for text in pq.read_table(path, columns=[landing.UNAVAILABLE]).column(0).drop_null().unique().to_pylist():
            found.update(json.loads(text))
    return found


def plan_table_query(
    table_id: str,
    mirror_path: str | None,
    batch_groups: Sequence[Sequence[str]],
    key_columns: Sequence[str],
    columns: Sequence[str],
) -> dict:
    """Return a table's part of the plan: the views to register, the query, the output schema.

    :param mirror_path: the live mirror directory, or None (first build)
    :param batch_groups: batch directories grouped by Parquet schema
    :return: ``{"views": {view: [directory, ...]}, "sql": <Spark SQL>, "output_schema": <base64
        Arrow IPC schema of the mirror, all columns nullable, as Spark writes them>}``
    """
    views: dict[str, list[str]] = {}
    if mirror_path:
        views[LIVE_VIEW] = [mirror_path]
    for index, group in enumerate(batch_groups):
        views[batch_view(index)] = list(group)
    inputs = [(view, _schema_of(dirs), view == LIVE_VIEW) for view, dirs in views.items()]
    flagged = flagged_columns([d for dirs in views.values() for d in dirs])
    sql, schema = mirror_query(table_id, inputs, key_columns, columns, sorted(flagged))
    return {"views": views, "sql": sql, "output_schema": base64.b64encode(schema.serialize().to_pybytes()).decode()}


def output_schema(entry: dict) -> pa.Schema:
    """Return the Arrow schema a plan entry's mirror is written with."""
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry["output_schema"])))
