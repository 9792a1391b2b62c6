"""Capture bookkeeping without services: snapshot floor, snapshotted tables, slot thresholds, health."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.capture_tables import (
    columns_needing_snapshot,
    move_floor_for_new_snapshot,
    read_snapshotted,
    record_columns,
    record_snapshotted,
)
from dagfoundry.cdc.mirror import publish_empty_mirrors, read_mirror_state
from dagfoundry.cdc.offsets import read_mirror_floor
from dagfoundry.cdc.slots import SlotStatus, SlotWalError, assess_slot_wal
from dagfoundry.cdc.source_schema import SourceColumn, SourceTable
from dagfoundry.cdc.tasks import CaptureHealthError, report_capture_health


def _land(lake_root, table_id: str, batch_id: int) -> None:
    rows = pa.table({"id": [1], landing.OP: ["r"], landing.BATCH_ID: pa.array([batch_id], pa.int64()),
                     landing.SEQ: pa.array([0], pa.int64()), landing.LSN: pa.array([None], pa.int64()),
                     landing.SOURCE_TS_MS: pa.array([0], pa.int64()), landing.DELETED: [False]})
    landing.write_batch(lake_root, "shop", table_id, batch_id, rows, ("id",))


def test_a_new_initial_snapshot_moves_the_mirror_floor_past_a_crashed_one(tmp_path):
    assert move_floor_for_new_snapshot(tmp_path, "shop") is None  # first run: nothing landed yet
    _land(tmp_path, "public.a", 1)
    _land(tmp_path, "public.a", 2)  # chunks of a snapshot whose run died before committing
    assert move_floor_for_new_snapshot(tmp_path, "shop") == 3
    assert read_mirror_floor(tmp_path, "shop") == 3
    assert move_floor_for_new_snapshot(tmp_path, "shop") is None  # nothing landed since the floor


def test_snapshotted_tables_are_remembered_and_default_to_landed_ones(tmp_path):
    _land(tmp_path, "public.a", 1)
    assert read_snapshotted(tmp_path, "shop") == {"public.a"}  # captures older than the state file
    record_snapshotted(tmp_path, "shop", ["public.b"])
    assert read_snapshotted(tmp_path, "shop") == {"public.a", "public.b"}


def test_slot_wal_thresholds_warn_then_fail():
    status = SlotStatus("dagfoundry_shop", True, False, 300 * 2**20, 0, "reserved")
    assert assess_slot_wal(status, warn_bytes=None, fail_bytes=None) is None
    assert "retains 300.0 MiB" in assess_slot_wal(status, warn_bytes=100 * 2**20, fail_bytes=None)
    with pytest.raises(SlotWalError, match="more than slot_wal_fail.*cdc-drop-slot"):
        assess_slot_wal(status, warn_bytes=100 * 2**20, fail_bytes=200 * 2**20)


def test_capture_health_fails_naming_every_problem():
    assert report_capture_health({"skipped_tables": {}, "slot": {"retained_wal_bytes": 5}})["skipped_tables"] == []
    summary = {"skipped_tables": {"public.events": "table public.events has no replica identity ..."},
               "slot_failure": "replication slot 'x' retains 9 GiB"}
    with pytest.raises(CaptureHealthError, match=r"(?s)public.events has no replica identity.*retains 9 GiB"):
        report_capture_health(summary)


def _table(*extra: SourceColumn) -> SourceTable:
    return SourceTable("public.t", (SourceColumn("id", "int4", "int32"), SourceColumn("v", "int4", "int32"), *extra), ("id",))


def test_added_columns_with_a_default_or_added_mid_run_need_a_snapshot(tmp_path):
    plain, defaulted = SourceColumn("plain", "int4", "int32"), SourceColumn("flag", "bool", "bool", has_default=True)
    assert columns_needing_snapshot(tmp_path, "shop", {"public.t": _table(plain)}) == {}  # never recorded
    record_columns(tmp_path, "shop", {"public.t": _table()}, {"public.t": _table()})
    assert columns_needing_snapshot(tmp_path, "shop", {"public.t": _table(plain)}) == {}
    assert columns_needing_snapshot(tmp_path, "shop", {"public.t": _table(plain, defaulted)}) == {"public.t": ["flag"]}
    # Added while the run captured: its events lacked the column, whatever its default.
    record_columns(tmp_path, "shop", {"public.t": _table()}, {"public.t": _table(plain)})
    assert columns_needing_snapshot(tmp_path, "shop", {"public.t": _table(plain)}) == {"public.t": ["plain"]}


def test_a_table_without_batches_gets_an_empty_mirror_with_its_columns(tmp_path):
    import pyarrow.parquet as pq

    _land(tmp_path, "public.full", 1)
    tables = {"public.t": _table(SourceColumn("at", "timestamptz", "timestamptz")), "public.full": _table()}
    assert publish_empty_mirrors(tmp_path, "shop", tables) == ["public.t"]
    mirror = pq.read_table(tmp_path / "mirror" / "shop" / "public.t")
    assert mirror.num_rows == 0 and mirror.column_names[:3] == ["id", "v", "at"]
    assert read_mirror_state(tmp_path, "shop", "public.t")["last_batch_id"] == 0
    assert publish_empty_mirrors(tmp_path, "shop", tables) == []  # never replaces a mirror


def test_capture_health_reports_special_values_without_failing():
    report = report_capture_health({"skipped_tables": {}, "special_values": {"public.t": {"d": 2}}})
    assert report["special_values"] == {"public.t": {"d": 2}}
