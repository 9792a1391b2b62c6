"""The mirror job's one definition: the common type of a retyped column, and the query built from the plan's schemas."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.mirror import MirrorError
from dagfoundry.cdc.mirror_sql import LIVE_VIEW, batch_view, common_types, mirror_query, spark_type, widest_type
from dagfoundry.lake.dialects import for_engine


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.int16(), pa.int32(), pa.int32()),
        (pa.decimal128(10, 2), pa.decimal128(12, 4), pa.decimal128(12, 4)),
        (pa.decimal128(10, 2), pa.decimal128(8, 4), pa.decimal128(12, 4)),
        (pa.int32(), pa.decimal128(12, 2), pa.decimal128(12, 2)),
        (pa.int64(), pa.decimal128(10, 2), pa.decimal128(21, 2)),
        (pa.float32(), pa.float64(), pa.float64()),
        (pa.int32(), pa.float32(), pa.float64()),
        (pa.int32(), pa.string(), pa.string()),
        (pa.date32(), pa.int32(), None),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), None),
        (pa.decimal128(38, 10), pa.int64(), pa.decimal128(38, 10)),
        (pa.decimal128(38, 20), pa.int64(), None),
    ],
)
def test_widest_type_holds_both(a, b, expected):
    assert widest_type(a, b) == expected
    assert widest_type(b, a) == expected


@pytest.mark.parametrize(
    ("arrow", "spark"),
    [(pa.int8(), "TINYINT"), (pa.int16(), "SMALLINT"), (pa.int32(), "INT"), (pa.int64(), "BIGINT"),
     (pa.decimal128(12, 4), "DECIMAL(12,4)"), (pa.timestamp("us"), "TIMESTAMP_NTZ"),
     (pa.timestamp("us", tz="UTC"), "TIMESTAMP"), (pa.string(), "STRING"), (pa.binary(), "BINARY"),
     (pa.date32(), "DATE"), (pa.list_(pa.int32()), "ARRAY<INT>")],
)
def test_spark_type_names_the_type_spark_reads_from_parquet(arrow, spark):
    assert spark_type(arrow) == spark


def test_a_retype_no_type_holds_is_refused_naming_table_column_and_both_types():
    first, later = pa.schema([("id", pa.int32()), ("d", pa.date32())]), pa.schema([("id", pa.int32()), ("d", pa.int32())])
    with pytest.raises(MirrorError) as caught:
        common_types("public.t", [first, later])
    assert str(caught.value) == (
        "table public.t: column d is date in some batches and int in others, with no type holding both; "
        "re-snapshot the table (reset_offsets) after such a change"
    )


def _meta(schema_fields):
    return pa.schema([*schema_fields, (landing.OP, pa.string()), (landing.BATCH_ID, pa.int64()), (landing.SEQ, pa.int64()),
                      (landing.LSN, pa.int64()), (landing.SOURCE_TS_MS, pa.int64()), (landing.DELETED, pa.bool_()),
                      (landing.UNAVAILABLE, pa.string())])


def test_inputs_are_cast_to_the_common_type_and_missing_columns_are_typed_nulls():
    mirror = pa.schema([("id", pa.int32()), ("n", pa.int32()), *[(c, pa.int64()) for c in
                        (landing.BATCH_ID, landing.SEQ, landing.LSN, landing.SOURCE_TS_MS)]])
    later = _meta([("id", pa.int32()), ("n", pa.int64()), ("added", pa.decimal128(12, 2))])
    sql, schema = mirror_query("public.t", [(LIVE_VIEW, mirror, True), (batch_view(0), later, False)], ["id"], ["id", "n", "added"])
    assert "CAST(`n` AS BIGINT) AS `n`" in sql and "CAST(NULL AS DECIMAL(12,2)) AS `added`" in sql
    assert "FALSE AS `_df_deleted`" in sql, "live mirror rows are present rows"
    assert "_df_absent" not in sql, "no flagged column: no carry-forward"
    assert schema.names == ["id", "n", "added", *(landing.BATCH_ID, landing.SEQ, landing.LSN, landing.SOURCE_TS_MS),
                            landing.UNAVAILABLE]
    assert schema.field("n").type == pa.int64() and all(f.nullable for f in schema)


def test_the_query_applies_markers_carries_unsent_values_and_keeps_the_latest_row_per_key():
    """The transpiled query on DuckDB over a small batch: the same text Spark runs."""
    import duckdb

    events = pa.Table.from_pylist([
        {"id": 1, "body": "old", landing.OP: "r", landing.SEQ: 0},
        {"id": None, "body": None, landing.OP: "t", landing.SEQ: 1, landing.DELETED: True},
        {"id": 2, "body": "kept", landing.OP: "c", landing.SEQ: 2},
        {"id": 2, "body": None, landing.OP: "u", landing.SEQ: 3, landing.UNAVAILABLE: '["body"]'},
        {"id": 3, "body": None, landing.OP: "u", landing.SEQ: 4, landing.UNAVAILABLE: '["body"]'},
        {"id": 4, "body": None, landing.OP: "c", landing.SEQ: 5},
        {"id": 4, "body": None, landing.OP: "u", landing.SEQ: 6, landing.UNAVAILABLE: '["body"]'},
        {"id": 5, "body": "gone", landing.OP: "c", landing.SEQ: 7},
        {"id": 5, "body": None, landing.OP: "d", landing.SEQ: 8, landing.DELETED: True},
    ], schema=_meta([("id", pa.int32()), ("body", pa.string())]))
    events = events.set_column(events.schema.get_field_index(landing.BATCH_ID), landing.BATCH_ID,
                               pa.array([1] * len(events), pa.int64()))
    deleted = [bool(v) for v in events.column(landing.DELETED).to_pylist()]
    events = events.set_column(events.schema.get_field_index(landing.DELETED), landing.DELETED, pa.array(deleted))
    sql, _ = mirror_query("public.t", [(batch_view(0), events.schema, False)], ["id"], ["id", "body"], ["body"])
    conn = duckdb.connect()
    conn.register(batch_view(0), events)
    rows = conn.execute(f"SELECT id, body, {landing.UNAVAILABLE} FROM ({for_engine(sql, 'duckdb')}) ORDER BY id").fetchall()
    assert rows == [(2, "kept", None), (3, None, '["body"]'), (4, None, None)]
