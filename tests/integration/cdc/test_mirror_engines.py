"""Both engines run the one mirror definition: the same landed batches give equal mirrors.

The batches are written in the landing format by the landing module (the capture's own
writer), in three mirror steps so each later step starts from a live mirror: widening
(``int`` -> ``bigint``, ``numeric(10,2)`` -> ``numeric(12,4)``) and a column added between
batches, a TRUNCATE marker in the middle of a batch, unsent TOAST values (carried from a
batch, from the live mirror, never sent, and after an explicit NULL), deletes, a key updated
several times and a key changed. Each step is mirrored with DuckDB in one lake and with Spark
in another; the published mirrors must hold equal rows and have equal Arrow schemas
(nullability included).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.mirror import MirrorError, mirror_location, plan_mirrors, update_mirrors

pytestmark = pytest.mark.integration

SOURCE, TABLE = "engines", "public.items"
UTC = dt.timezone.utc
SPARK_CONF = {"spark.sql.shuffle.partitions": "2"}


def _batch(batch_id: int, events: list[dict], *, wide: bool = False):
    """Return a batch's Arrow table: ``events`` in emission order (seq = position)."""
    import pyarrow as pa

    source = [("id", pa.int32()), ("qty", pa.int64() if wide else pa.int32()),
              ("price", pa.decimal128(12, 4) if wide else pa.decimal128(10, 2)), ("body", pa.string()),
              ("note", pa.string()), ("at", pa.timestamp("us", tz="UTC")), ("day", pa.date32())]
    if wide:
        source.append(("extra", pa.string()))  # added to the table since the first batches
    meta = [(landing.OP, pa.string()), (landing.BATCH_ID, pa.int64()), (landing.SEQ, pa.int64()),
            (landing.LSN, pa.int64()), (landing.SOURCE_TS_MS, pa.int64()), (landing.DELETED, pa.bool_()),
            (landing.SPECIAL, pa.string()), (landing.UNAVAILABLE, pa.string())]
    schema = pa.schema(source + meta)
    rows = []
    for seq, event in enumerate(events):
        row = {name: event.get(name) for name, _ in source}
        missing = event.get("missing")
        row.update({
            landing.OP: event["op"], landing.BATCH_ID: batch_id, landing.SEQ: seq,
            landing.LSN: None if event["op"] == "r" else 1000 * batch_id + seq, landing.SOURCE_TS_MS: 1_700_000_000_000 + seq,
            landing.DELETED: event["op"] in landing.REMOVING_OPS, landing.SPECIAL: event.get("special"),
            landing.UNAVAILABLE: json.dumps(missing) if missing else None,
        })
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def _row(op: str, id_: int | None, qty: int | None = None, body: str | None = None, **more) -> dict:
    at = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + dt.timedelta(minutes=id_ or 0)
    return {"op": op, "id": id_, "qty": qty, "price": Decimal(f"{id_ or 0}.25"), "body": body,
            "note": f"note {id_}", "at": at, "day": dt.date(2026, 1, 1) + dt.timedelta(days=id_ or 0), **more}


BIG = "toasted " * 500
STEPS = [
    [  # step 1: a snapshot, then changes in the next batch
        (1, [_row("r", i, qty=i, body=f"{BIG}{i}") for i in range(1, 8)], False),
        (2, [
            _row("u", 1, qty=10, missing=["body"]),           # body carried from batch 1
            _row("u", 2, qty=20), _row("u", 2, qty=21), _row("u", 2, qty=22, body="two"),  # one key, many updates
            _row("d", 3),
            _row("u", 4, qty=40, body=None),                  # an explicit NULL is a sent value...
            _row("u", 4, qty=41, missing=["body"]),           # ...so it is carried, not flagged
            _row("u", 8, qty=80, missing=["body", "note"]),   # never sent: null and listed
            _row("d", 5), _row("c", 50, qty=5, body="moved"),  # a key changed (delete + create)
            _row("u", 6, qty=60, special=json.dumps({"price": "NaN"}), price=None),
        ], False),
    ],
    [  # step 2: widened types and a new column; values carried from the live mirror
        (3, [
            _row("u", 1, qty=2**40, missing=["body"], extra="x"),
            _row("u", 8, qty=81, missing=["body"]),
            _row("u", 7, qty=70, body=f"{BIG}7", missing=["note"]),  # note carried from the live mirror
            _row("c", 9, qty=9, body="nine", extra="e"),
        ], True),
    ],
    [  # step 3: a TRUNCATE marker mid-batch, then new rows and their changes
        (4, [
            _row("u", 2, qty=23),
            {"op": landing.TRUNCATE_OP, "id": None},
            _row("c", 10, qty=100, body=f"{BIG}ten"), _row("c", 11, qty=110, body="eleven"), _row("c", 12, qty=120),
        ], True),
        (5, [
            _row("u", 10, qty=101, missing=["body"]),         # carried from batch 4 (after the marker)
            _row("u", 11, qty=111, body="eleven"), _row("u", 11, qty=112, body="eleven again"),
            _row("u", 11, qty=113, missing=["body"]),
            _row("d", 12),
            _row("u", 13, qty=130, missing=["body"]),         # never sent
        ], True),
    ],
]


def _land(lake_root: Path, batches) -> None:
    for batch_id, events, wide in batches:
        landing.write_batch(lake_root, SOURCE, TABLE, batch_id, _batch(batch_id, events, wide=wide), ("id",))


def _published(lake_root: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    live = mirror_location(lake_root, SOURCE, TABLE).live
    files = sorted(live.glob("*.parquet"))
    schemas = {pq.read_schema(f).remove_metadata() for f in files}
    assert len(schemas) == 1, f"{live}: files with different schemas {schemas}"
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    return sorted(rows, key=lambda r: r["id"]), schemas.pop()


def test_duckdb_and_spark_publish_equal_mirrors_from_the_same_batches(tmp_path):
    lakes = {"duckdb": tmp_path / "duckdb", "spark": tmp_path / "spark"}
    for step, batches in enumerate(STEPS, start=1):
        summaries = {}
        for engine, root in lakes.items():
            _land(root, batches)
            summaries[engine] = update_mirrors(root, SOURCE, engine=engine, conf=SPARK_CONF)
            assert summaries[engine]["engine"] == engine
        (duck_rows, duck_schema), (spark_rows, spark_schema) = _published(lakes["duckdb"]), _published(lakes["spark"])
        assert duck_schema.equals(spark_schema), f"step {step}: schemas differ\nduckdb:\n{duck_schema}\nspark:\n{spark_schema}"
        assert duck_rows == spark_rows, f"step {step}: rows differ"
        drop_engine = {e: {k: v for k, v in s["tables"][TABLE].items() if k != "engine"} for e, s in summaries.items()}
        assert drop_engine["duckdb"] == drop_engine["spark"]
    rows = {r["id"]: r for r in duck_rows}
    # After the marker only rows created after it remain; carried, flagged and deleted as planned.
    assert sorted(rows) == [10, 11, 13]
    assert rows[10]["body"] == f"{BIG}ten" and rows[10]["qty"] == 101 and rows[10][landing.UNAVAILABLE] is None
    assert rows[11]["body"] == "eleven again" and rows[11]["qty"] == 113
    assert rows[13]["body"] is None and json.loads(rows[13][landing.UNAVAILABLE]) == ["body"]
    assert duck_schema.field("qty").type == "int64" and str(duck_schema.field("price").type) == "decimal128(12, 4)"
    assert all(f.nullable for f in duck_schema), "every mirror column is nullable, as Spark writes it"


def test_step_two_mirror_carries_values_from_the_live_mirror_on_both_engines(tmp_path):
    """The state before the TRUNCATE: carried values, flagged columns, widened types, special values."""
    for engine in ("duckdb", "spark"):
        root = tmp_path / engine
        for batches in STEPS[:2]:
            _land(root, batches)
            update_mirrors(root, SOURCE, engine=engine, conf=SPARK_CONF)
        rows = {r["id"]: r for r in _published(root)[0]}
        assert sorted(rows) == [1, 2, 4, 6, 7, 8, 9, 50], engine
        assert rows[1]["body"] == f"{BIG}1" and rows[1]["qty"] == 2**40 and rows[1]["extra"] == "x", engine
        assert rows[2]["qty"] == 22 and rows[2]["body"] == "two", engine
        assert rows[4]["body"] is None and rows[4][landing.UNAVAILABLE] is None, f"{engine}: an explicit NULL was sent"
        assert rows[8]["body"] is None and json.loads(rows[8][landing.UNAVAILABLE]) == ["body"], engine
        assert rows[8]["note"] == "note 8", f"{engine}: note was sent in batch 3"
        assert rows[7]["note"] == "note 7" and rows[7]["body"] == f"{BIG}7", engine
        assert rows[6]["price"] is None and json.loads(rows[6][landing.SPECIAL]) == {"price": "NaN"}, engine
        assert rows[9]["price"] == Decimal("9.2500"), engine


def test_a_retype_no_type_holds_is_refused_when_the_plan_is_made(tmp_path):
    import pyarrow as pa

    root = tmp_path / "lake"
    _land(root, STEPS[0][:1])
    clash = _batch(2, [_row("u", 1, qty=1)]).set_column(2, "price", pa.array([dt.date(2026, 1, 1)], pa.date32()))
    landing.write_batch(root, SOURCE, TABLE, 2, clash, ("id",))
    with pytest.raises(MirrorError, match=r"table public.items: column price is decimal\(10,2\) in some batches and "
                                          r"date in others, with no type holding both; re-snapshot the table"):
        plan_mirrors(root, SOURCE)


def test_switching_engines_between_runs_updates_the_other_engines_mirror(tmp_path):
    """Spark updates a mirror DuckDB wrote and DuckDB one Spark wrote: the result equals DuckDB's alone."""
    mixed, alone = tmp_path / "mixed", tmp_path / "duckdb"
    for batches, engine in zip(STEPS, ("spark", "duckdb", "spark"), strict=True):
        _land(mixed, batches)
        assert update_mirrors(mixed, SOURCE, engine=engine, conf=SPARK_CONF)["engine"] == engine
        _land(alone, batches)
        update_mirrors(alone, SOURCE, engine="duckdb")
        (rows, schema), (expected_rows, expected_schema) = _published(mixed), _published(alone)
        assert schema.equals(expected_schema) and rows == expected_rows, f"after the {engine} run"
