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
       "local": 1_704_164_645_123_456, "day": 19724, "note": "Zoë 東京", "tags": ["a", "é"], "blob": "AAE="}


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
