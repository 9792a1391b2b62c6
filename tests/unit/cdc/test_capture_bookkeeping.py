"""Capture bookkeeping without services: snapshot floor, snapshotted tables, slot thresholds, health."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.capture_tables import move_floor_for_new_snapshot, read_snapshotted, record_snapshotted
from dagfoundry.cdc.offsets import read_mirror_floor
from dagfoundry.cdc.slots import SlotStatus, SlotWalError, assess_slot_wal
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
