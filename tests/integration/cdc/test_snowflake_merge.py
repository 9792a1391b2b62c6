"""The Snowflake MERGE of landed batches, run through the real SnowflakeHook on fakesnow.

No Snowflake account is reachable here; ``fakesnow`` (Snowflake SQL on DuckDB behind the real
``snowflake.connector`` API) is the stand-in. Batches are built with pyarrow and published
with the landing contract's own writer.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.snowflake_merge import (
    SnowflakeMergeError,
    merge_landed_batches,
    merge_sql,
    plan_merge,
    quote_table,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")]

SOURCE, TABLE, TARGET = "shop", "public.orders", "ANALYTICS.ORDERS"
TS = 1_700_000_000_000


@pytest.fixture
def snowflake(monkeypatch: pytest.MonkeyPatch):
    import fakesnow
    monkeypatch.setenv(
        "AIRFLOW_CONN_SNOWFLAKE_CDC_TEST",
        json.dumps({"conn_type": "snowflake", "login": "loader", "password": "sf-Pa55word", "schema": "ANALYTICS",
                    "extra": {"account": "fake-account", "database": "MIRROR", "warehouse": "LOAD_WH"}}),
    )
    with fakesnow.patch():
        yield


def land(root: Path, batch_id: int, events: list[tuple], *, shuffle: bool = True) -> None:
    """Publish one batch; events are ``(op, id, customer, amount, lsn)`` in emission order."""
    rows = [dict(op=e[0], id=e[1], customer=e[2], amount=e[3], lsn=e[4], seq=i) for i, e in enumerate(events)]
    if shuffle:  # the file's row order must not matter, only _df_seq
        rows = rows[1::2] + rows[0::2]
    table = pa.table({
        "id": pa.array([r["id"] for r in rows], pa.int64()),
        "customer": pa.array([r["customer"] for r in rows], pa.string()),
        "amount": pa.array([None if r["amount"] is None else Decimal(r["amount"]) for r in rows], pa.decimal128(12, 2)),
        landing.OP: pa.array([r["op"] for r in rows], pa.string()),
        landing.BATCH_ID: pa.array([batch_id] * len(rows), pa.int64()),
        landing.SEQ: pa.array([r["seq"] for r in rows], pa.int64()),
        landing.LSN: pa.array([r["lsn"] for r in rows], pa.int64()),
        landing.SOURCE_TS_MS: pa.array([TS + 1000 * batch_id + r["seq"] for r in rows], pa.int64()),
        landing.DELETED: pa.array([r["op"] == "d" for r in rows], pa.bool_()),
    })
    landing.write_batch(root, SOURCE, TABLE, batch_id, table, ("id",))


def merge(root: Path, **kwargs) -> dict:
    return merge_landed_batches(snowflake_conn_id="snowflake_cdc_test", lake_root=root, source=SOURCE,
                                table_id=TABLE, target_table=kwargs.pop("target", TARGET), **kwargs)


def rows(sql: str = 'SELECT "ID", "CUSTOMER", "AMOUNT" FROM ANALYTICS.ORDERS ORDER BY "ID"') -> list[tuple]:
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    return [tuple(r) for r in SnowflakeHook(snowflake_conn_id="snowflake_cdc_test").get_records(sql)]


def test_duplicates_in_a_batch_keep_the_latest_event_per_key(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 100), ("u", 1, "ann", "11.00", 101), ("c", 2, "bob", "5.00", 102),
                       ("u", 1, "ann", "12.50", 103), ("u", 2, "bob", "6.00", 104)])
    result = merge(tmp_path)
    assert rows() == [(1, "ann", Decimal("12.50")), (2, "bob", Decimal("6.00"))]
    assert result["batches"] == [1] and result["staged_rows"] == 5 and result["watermark"] == 1


def test_emission_order_wins_over_lsn_across_batches(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 500), ("c", 2, "bob", "5.00", 501)])
    # an incremental-snapshot read (no LSN) and a streamed update with a smaller LSN, emitted later
    land(tmp_path, 2, [("r", 1, "ann-snap", "10.00", None), ("u", 2, "bob-late", "7.00", 400)])
    merge(tmp_path)
    assert rows() == [(1, "ann-snap", Decimal("10.00")), (2, "bob-late", Decimal("7.00"))]


def test_batches_merged_one_run_at_a_time_give_the_same_table(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1), ("c", 2, "bob", "5.00", 2)])
    assert merge(tmp_path)["batches"] == [1]
    land(tmp_path, 2, [("u", 1, "ann2", "11.00", 3), ("d", 2, None, None, 4), ("c", 3, "cy", "1.00", 5)])
    assert merge(tmp_path)["batches"] == [2]
    assert rows() == [(1, "ann2", Decimal("11.00")), (3, "cy", Decimal("1.00"))]


def test_hard_delete_removes_the_row_and_ignores_unknown_keys(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1), ("c", 2, "bob", "5.00", 2)])
    merge(tmp_path)
    land(tmp_path, 2, [("d", 1, None, None, 3), ("d", 99, None, None, 4), ("c", 5, "eve", "1.00", 5), ("d", 5, None, None, 6)])
    merge(tmp_path)
    assert rows() == [(2, "bob", Decimal("5.00"))]


def test_soft_delete_flags_the_row_and_a_recreate_clears_the_flag(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1), ("c", 2, "bob", "5.00", 2)])
    merge(tmp_path, delete_mode="soft")
    land(tmp_path, 2, [("d", 1, None, None, 3), ("d", 2, "", None, 4)])
    merge(tmp_path, delete_mode="soft")
    land(tmp_path, 3, [("c", 2, "bob-again", "9.00", 5)])
    merge(tmp_path, delete_mode="soft")
    got = rows('SELECT "ID", "CUSTOMER", "_DF_DELETED", "_DF_DELETED_AT" IS NOT NULL, "_DF_BATCH_ID" '
               'FROM ANALYTICS.ORDERS ORDER BY "ID"')
    # a delete keeps the last known values (the delete's before-image may be partial)
    assert got == [(1, "ann", True, True, 2), (2, "bob-again", False, False, 3)]
    deleted_at = rows('SELECT "_DF_DELETED_AT" FROM ANALYTICS.ORDERS WHERE "ID" = 1')[0][0]
    assert int(deleted_at.timestamp() * 1000) == TS + 2000  # the source commit time of the delete


def test_replayed_batch_changes_nothing(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1), ("c", 2, "bob", "5.00", 2)])
    land(tmp_path, 2, [("u", 1, "ann2", "11.00", 3), ("d", 2, None, None, 4)])
    merge(tmp_path)
    before = rows('SELECT * FROM ANALYTICS.ORDERS ORDER BY "ID"')
    again = merge(tmp_path)
    assert again["batches"] == [] and again["watermark"] == 2
    # lose the watermark (a crash between MERGE and its update): the replayed MERGE is a no-op
    rows('DELETE FROM ANALYTICS."DAGFOUNDRY_CDC_WATERMARKS"')
    replay = merge(tmp_path)
    assert replay["batches"] == [1, 2]
    assert all(count == 0 for count in replay["merged"].values()), replay["merged"]
    assert rows('SELECT * FROM ANALYTICS.ORDERS ORDER BY "ID"') == before


def test_an_older_batch_cannot_overwrite_newer_rows(snowflake, tmp_path):
    newer, older = tmp_path / "lake", tmp_path / "old-copy"
    land(newer, 1, [("c", 1, "ann", "10.00", 1)])
    land(newer, 2, [("u", 1, "ann-new", "20.00", 2)])
    merge(newer, delete_mode="soft")
    land(older, 1, [("c", 1, "ann", "10.00", 1)])
    # another landing copy with its own watermark: only the row-level (batch, seq) guard protects
    merge(older, delete_mode="soft", watermark_table="ANALYTICS.OTHER_WATERMARKS")
    assert rows() == [(1, "ann-new", Decimal("20.00"))]


def test_primary_key_change_arrives_as_delete_then_create(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1)])
    merge(tmp_path)
    land(tmp_path, 2, [("d", 1, None, None, 2), ("c", 10, "ann", "10.00", 2)])
    merge(tmp_path)
    assert rows() == [(10, "ann", Decimal("10.00"))]


def test_target_is_created_with_mapped_types_and_metadata(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", None)])
    merge(tmp_path, delete_mode="soft")
    got = rows("SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS "
               "WHERE TABLE_SCHEMA = 'ANALYTICS' AND TABLE_NAME = 'ORDERS' ORDER BY ORDINAL_POSITION")
    names = [r[0] for r in got]
    assert names == ["ID", "CUSTOMER", "AMOUNT", "_DF_OP", "_DF_BATCH_ID", "_DF_SEQ", "_DF_LSN",
                     "_DF_SOURCE_TS_MS", "_DF_DELETED", "_DF_DELETED_AT"]
    types = dict(got)
    assert types["ID"] == "NUMBER" and types["CUSTOMER"] == "TEXT" and types["_DF_DELETED"] == "BOOLEAN"


def test_unsent_toast_values_are_refused_not_overwritten_with_null(snowflake, tmp_path):
    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1)])
    merge(tmp_path)
    table = pa.table({
        "id": pa.array([1], pa.int64()), "customer": pa.array([None], pa.string()),
        "amount": pa.array([Decimal("11.00")], pa.decimal128(12, 2)), landing.OP: ["u"],
        landing.BATCH_ID: pa.array([2], pa.int64()), landing.SEQ: pa.array([0], pa.int64()),
        landing.LSN: pa.array([2], pa.int64()), landing.SOURCE_TS_MS: pa.array([TS], pa.int64()),
        landing.DELETED: [False], landing.UNAVAILABLE: ['["customer"]'],
    })
    landing.write_batch(tmp_path, SOURCE, TABLE, 2, table, ("id",))
    with pytest.raises(SnowflakeMergeError, match=r"TOASTed values of \['customer'\].*REPLICA IDENTITY FULL"):
        merge(tmp_path)
    assert rows() == [(1, "ann", Decimal("10.00"))]


def test_a_batch_failing_its_quality_checks_is_not_merged(snowflake, tmp_path):
    from dagfoundry.errors import DataQualityError

    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1)])
    merge(tmp_path)
    land(tmp_path, 2, [("c", None, "no key", "1.00", 2), ("c", 2, "bob", "2.00", 3)])  # e.g. a special value in the key
    with pytest.raises(DataQualityError, match="public.orders batch 2: 1 of 2 rows have a null key column 'id'"):
        merge(tmp_path)
    assert rows() == [(1, "ann", Decimal("10.00"))], "nothing of the failing batch reached Snowflake"


def test_hostile_names_are_rejected_before_any_sql(tmp_path):
    schema = pa.schema([("id", pa.int64()), *[(c, pa.int64()) for c in landing.METADATA_COLUMNS]])
    with pytest.raises(SnowflakeMergeError, match="not a plain Snowflake identifier"):
        plan_merge(target_table='ORDERS"; DROP TABLE X; --', schema=schema, key_columns=["id"])
    with pytest.raises(SnowflakeMergeError, match="database.schema.table"):
        quote_table("a.b.c.d")
    bad = schema.append(pa.field("amount; drop", pa.int64()))
    with pytest.raises(SnowflakeMergeError, match="column 'amount; drop'"):
        plan_merge(target_table="ORDERS", schema=bad, key_columns=["id"])
    with pytest.raises(SnowflakeMergeError, match="delete_mode 'purge'"):
        plan_merge(target_table="ORDERS", schema=schema, key_columns=["id"], delete_mode="purge")


def test_merge_sql_dedupes_by_emission_order():
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), *[(c, pa.int64()) for c in landing.METADATA_COLUMNS]])
    sql = merge_sql(plan_merge(target_table="DB.S.T", schema=schema, key_columns=["id"]))
    assert 'QUALIFY ROW_NUMBER() OVER (PARTITION BY "ID" ORDER BY s."_DF_BATCH_ID" DESC, s."_DF_SEQ" DESC) = 1' in sql
    assert sql.startswith('MERGE INTO "DB"."S"."T" AS t')
    assert '"DB"."S"."DAGFOUNDRY_CDC_WATERMARKS"' in sql


def test_operator_merges_and_returns_a_json_safe_summary(snowflake, tmp_path):
    from dagfoundry.operators.snowflake_cdc_merge import SnowflakeCdcMergeOperator

    land(tmp_path, 1, [("c", 1, "ann", "10.00", 1)])
    op = SnowflakeCdcMergeOperator(task_id="merge", snowflake_conn_id="snowflake_cdc_test", lake_root=str(tmp_path),
                                   source=SOURCE, table_id=TABLE, target_table=TARGET)
    result = op.execute({})
    assert json.loads(json.dumps(result)) == result
    assert result["batches"] == [1] and rows() == [(1, "ann", Decimal("10.00"))]


def test_modules_import_nothing_heavy_at_parse_time():
    import subprocess
    import sys

    code = (
        "import sys; import dagfoundry.operators.debezium_connect, dagfoundry.sensors.debezium_connect, "
        "dagfoundry.operators.snowflake_cdc_merge, dagfoundry.cdc.snowflake_merge; "
        "heavy = [m for m in ('requests', 'aiohttp', 'pandas', 'pyarrow', 'snowflake.connector', 'psycopg2') if m in sys.modules]; "
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3] / "plugins")
    heavy = [line for line in out.stdout.splitlines() if line.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], f"imported at parse time: {heavy}"
