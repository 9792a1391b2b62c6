"""Connect mode: a sink's files of Debezium envelopes become landed batches, once each."""

from __future__ import annotations

import json

import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable, SourceConnection
from dagfoundry.cdc.sink_pickup import pickup_sink_files

pytestmark = pytest.mark.integration


def test_new_sink_files_land_once_in_emission_order(cdc_database, source_sql, tmp_path):
    source_sql("CREATE TABLE IF NOT EXISTS public.sinked (id int PRIMARY KEY, amount numeric(8,2), note text)")
    config = CaptureConfig(source="sinkshop", conn_id="unused", tables=(CapturedTable("public", "sinked"),), signal_table=None)
    connection = SourceConnection("127.0.0.1", 5432, cdc_database, "postgres")
    sink, lake = tmp_path / "sink", tmp_path / "lake"
    sink.mkdir()

    def write(name, events):
        lines = [json.dumps({"op": op, "before": before, "after": after, "source": {"schema": "public", "table": "sinked", "lsn": lsn, "ts_ms": 1}})
                 for op, before, after, lsn in events]
        (sink / name).write_text("\n".join(lines) + "\n")

    write("sinkshop.public.sinked+0+0000000002.json", [("u", None, {"id": 1, "amount": "2.00", "note": "b"}, 20), ("d", {"id": 2}, None, 30)])
    write("sinkshop.public.sinked+0+0000000000.json", [("c", None, {"id": 1, "amount": "1.00", "note": "ä"}, 10), ("c", None, {"id": 2, "amount": "9.99", "note": None}, 11)])
    first = pickup_sink_files(config, lake, sink, connection=connection)
    assert first.batch_id == 1 and first.rows_per_table == {"public.sinked": 4}
    import pyarrow.parquet as pq

    rows = pq.read_table(landing.batch_path(lake, "sinkshop", "public.sinked", 1)).to_pylist()
    assert [(r["id"], r[landing.OP], r[landing.LSN]) for r in rows] == [(1, "c", 10), (2, "c", 11), (1, "u", 20), (2, "d", 30)]
    assert pickup_sink_files(config, lake, sink, connection=connection).batch_id is None
    write("sinkshop.public.sinked+0+0000000004.json", [("c", None, {"id": 3, "amount": "3.00", "note": "c"}, 40)])
    assert pickup_sink_files(config, lake, sink, connection=connection).rows_per_table == {"public.sinked": 1}
