"""The converter from Debezium JSON envelopes to landing rows, without services."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.change_events import ChangeBatchBuilder, ChangeEventError
from dagfoundry.cdc.source_schema import SourceColumn, SourceTable, landing_kind

TABLE = SourceTable(
    "public.orders",
    (
        SourceColumn("id", "int4", "int32"),
        SourceColumn("amount", "numeric", "decimal", 10, 2),
        SourceColumn("raw", "numeric", landing_kind("numeric", None, None)),
        SourceColumn("placed", "timestamptz", "timestamptz"),
        SourceColumn("local", "timestamp", "timestamp"),
        SourceColumn("day", "date", "date"),
        SourceColumn("note", "text", "string"),
        SourceColumn("tags", "_text", "string"),
        SourceColumn("blob", "bytea", "binary"),
    ),
    ("id",),
)


def envelope(op, *, after=None, before=None, lsn=100, ts=1_700_000_000_000, table="orders"):
    return json.dumps({"op": op, "before": before, "after": after, "ts_ms": ts,
                       "source": {"schema": "public", "table": table, "lsn": lsn, "ts_ms": ts}})


ROW = {"id": 1, "amount": "12.50", "raw": "1.000000001", "placed": "2024-01-02T03:04:05.123456Z",
       "local": 1_704_164_645_123_456, "day": 19724, "note": "Zoë 東京", "tags": ["a", "é"], "blob": "0001"}


def test_events_land_with_types_and_emission_order():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json("shop.public.orders", None, envelope("r", after=ROW, lsn=None))
    builder.add_json("shop.public.orders", None, envelope("u", after={**ROW, "amount": "13.00", "note": None}, lsn=200))
    builder.add_json("shop.public.orders", None, envelope("d", before={**ROW, "note": "", "amount": "0"}, lsn=300))
    rows = builder.to_arrow("public.orders", 7).to_pylist()
    assert [r[landing.OP] for r in rows] == ["r", "u", "d"]
    assert [r[landing.SEQ] for r in rows] == [0, 1, 2]
    assert [r[landing.LSN] for r in rows] == [None, 200, 300]
    assert [r[landing.DELETED] for r in rows] == [False, False, True]
    assert all(r[landing.BATCH_ID] == 7 for r in rows)
    first = rows[0]
    assert first["amount"] == Decimal("12.50") and first["raw"] == "1.000000001"
    assert first["placed"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
    assert first["local"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert first["day"] == dt.date(2024, 1, 2)
    assert first["note"] == "Zoë 東京" and json.loads(first["tags"]) == ["a", "é"] and first["blob"] == b"\x00\x01"
    assert rows[1]["note"] is None and rows[1]["amount"] == Decimal("13.00")
    # A delete keeps only its key: the other before-image columns are placeholders.
    assert rows[2]["id"] == 1 and rows[2]["note"] is None and rows[2]["amount"] is None


def test_heartbeats_and_signal_table_events_are_not_landed():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE}, ignored_tables=("public.dagfoundry_cdc_signal",))
    builder.add_json("__debezium-heartbeat.shop", None, json.dumps({"ts_ms": 1}))
    builder.add_json("shop.public.dagfoundry_cdc_signal", None, envelope("c", after={"id": "x"}, table="dagfoundry_cdc_signal"))
    assert builder.total == 0 and builder.ignored_events == 2


def test_tombstone_becomes_a_key_only_delete():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json("shop.public.orders", json.dumps({"id": 5}), None)
    (row,) = builder.to_arrow("public.orders", 1).to_pylist()
    assert row["id"] == 5 and row[landing.OP] == "d" and row[landing.DELETED] is True


def test_schema_wrapped_envelope_is_unwrapped():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json(None, None, json.dumps({"schema": {}, "payload": json.loads(envelope("c", after=ROW))}))
    assert builder.counts() == {"public.orders": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (envelope("x", after=ROW), "operation 'x' cannot be mirrored"),
        (envelope("c", after=ROW, table="other"), "not captured"),
        (envelope("c", after=None), "without its row image"),
    ],
)
def test_events_that_cannot_be_mirrored_raise(value, message):
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    with pytest.raises(ChangeEventError, match=message):
        builder.add_json(None, None, value)


def test_value_of_wrong_type_names_table_and_column():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json(None, None, envelope("c", after={**ROW, "amount": "not-a-number"}))
    with pytest.raises(ChangeEventError, match="public.orders: column amount"):
        builder.to_arrow("public.orders", 1)


def test_truncate_lands_as_a_keyless_marker_in_emission_order():
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json("shop.public.orders", None, envelope("c", after=ROW))
    builder.add_json("shop.public.orders", None, envelope("t", after=None, lsn=400))
    builder.add_json("shop.public.orders", None, envelope("c", after={**ROW, "id": 2}, lsn=500))
    rows = builder.to_arrow("public.orders", 3).to_pylist()
    assert [(r[landing.OP], r["id"], r[landing.DELETED]) for r in rows] == [("c", 1, False), ("t", None, True), ("c", 2, False)]


def _snapshot_event(op, marker):
    return json.dumps({"op": op, "after": ROW, "source": {"schema": "public", "table": "orders", "snapshot": marker}})


@pytest.mark.parametrize("batch", [False, True])
def test_an_open_initial_snapshot_is_tracked_until_its_last_record(batch):
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})

    def add(op, marker):
        if batch:
            builder.add_json_batch(["shop.public.orders"], "[" + _snapshot_event(op, marker) + "]", lambda i: None)
        else:
            builder.add_json("shop.public.orders", None, _snapshot_event(op, marker))
        return builder.snapshot_open

    assert [add("r", m) for m in ("first", "true", "last_in_data_collection")] == [True, True, True]
    assert add("r", "last") is False
    assert add("r", "incremental") is False  # incremental snapshots resume from their offsets
    assert add("c", "false") is False


SPECIAL_TABLE = SourceTable(
    "public.odd",
    (
        SourceColumn("id", "int4", "int32"),
        SourceColumn("n", "numeric", "decimal", 12, 3),
        SourceColumn("nu", "numeric", landing_kind("numeric", None, None)),
        SourceColumn("d", "float8", "float64"),
        SourceColumn("dt", "date", "date"),
        SourceColumn("tm", "time", "time"),
        SourceColumn("ts", "timestamp", "timestamp"),
        SourceColumn("tstz", "timestamptz", "timestamptz"),
    ),
    ("id",),
)
#: values as Debezium 3.6 sends them (observed on PostgreSQL 15: snapshot and streaming)
ODD_ROWS = [
    {"id": 1, "n": "NAN", "nu": "POSITIVE_INFINITY", "d": "NaN", "dt": -622_191_234, "tm": 86_400_000_000,
     "ts": 9_223_372_036_825_200_000, "tstz": "infinity"},
    {"id": 2, "n": "1.500", "nu": "NEGATIVE_INFINITY", "d": "-Infinity", "dt": -2_147_472_691, "tm": 0,
     "ts": -9_223_372_036_832_400_000, "tstz": "-infinity"},
    {"id": 3, "n": None, "nu": "NAN", "d": 1.5, "dt": 6_585_322, "tm": 45_296_789_000,
     "ts": 568_971_820_800_000_000, "tstz": "+20000-01-01T00:00:00.000000Z"},
    {"id": 4, "n": "2.000", "nu": "7", "d": 2.5, "dt": 2_932_896, "tm": None,
     "ts": 253_402_300_799_999_999, "tstz": "9999-12-31T23:59:59.999999Z"},
]


@pytest.mark.parametrize("only_dates", [False, True], ids=["python-path", "arrow-path"])
def test_special_values_land_losslessly(only_dates):
    builder = ChangeBatchBuilder("shop", {"public.odd": SPECIAL_TABLE})
    for row in ODD_ROWS:
        # Without float strings the struct conversion succeeds and only some columns fall back.
        image = {**row, "d": 1.0} if only_dates else row
        builder.add_json("shop.public.odd", None, envelope("c", after=image, table="odd"))
    rows = builder.to_arrow("public.odd", 1).to_pylist()
    specials = [json.loads(r[landing.SPECIAL]) if r[landing.SPECIAL] else None for r in rows]
    assert specials[0] == {"n": "NaN", "dt": "infinity", "ts": "infinity", "tstz": "infinity"}
    assert specials[1] == {"dt": "-infinity", "ts": "-infinity", "tstz": "-infinity"}
    assert specials[2] == {"dt": "+20000-01-01", "ts": "+20000-01-01T00:00:00", "tstz": "+20000-01-01T00:00:00.000000Z"}
    assert specials[3] is None
    assert [r["n"] for r in rows] == [None, Decimal("1.500"), None, Decimal("2.000")]
    assert [r["nu"] for r in rows] == ["Infinity", "-Infinity", "NaN", "7"]
    assert [r["tm"] for r in rows] == [86_400_000_000, 0, 45_296_789_000, None]
    assert rows[3]["dt"] == dt.date(9999, 12, 31) and rows[3]["ts"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert all(rows[i][c] is None for i in range(3) for c in ("dt", "ts", "tstz"))
    if not only_dates:
        floats = [r["d"] for r in rows]
        assert floats[0] != floats[0] and floats[1] == float("-inf") and floats[2:] == [1.5, 2.5]


def test_special_values_are_counted_in_the_manifest(tmp_path):
    builder = ChangeBatchBuilder("shop", {"public.odd": SPECIAL_TABLE})
    for row in ODD_ROWS:
        builder.add_json("shop.public.odd", None, envelope("c", after=row, table="odd"))
    landing.write_batch(tmp_path, "shop", "public.odd", 1, builder.to_arrow("public.odd", 1), ("id",))
    assert landing.read_manifest(tmp_path, "shop", "public.odd", 1)["special_values"] == {"n": 1, "dt": 3, "ts": 3, "tstz": 3}
    assert landing.special_values_of(tmp_path, "shop", [1]) == {"public.odd": {"n": 1, "dt": 3, "ts": 3, "tstz": 3}}


def test_unchanged_toast_values_land_null_and_listed():
    placeholder = "__debezium_unavailable_value"
    builder = ChangeBatchBuilder("shop", {"public.orders": TABLE})
    builder.add_json("shop.public.orders", None, envelope("u", after={**ROW, "note": placeholder, "tags": [placeholder],
                                                                      "blob": placeholder}))
    builder.add_json("shop.public.orders", None, envelope("u", after={**ROW, "note": None}))
    rows = builder.to_arrow("public.orders", 1).to_pylist()
    assert rows[0]["note"] is None and rows[0]["tags"] is None and rows[0]["blob"] is None
    assert json.loads(rows[0][landing.UNAVAILABLE]) == ["note", "tags", "blob"]
    assert rows[1][landing.UNAVAILABLE] is None and rows[1]["note"] is None and rows[1]["blob"] == b"\x00\x01"
