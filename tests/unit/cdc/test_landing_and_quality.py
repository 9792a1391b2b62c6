"""Landing paths, batch listing, immutability, and batch quality checks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from dagfoundry.cdc import landing
from dagfoundry.cdc.mirror import plan_mirrors, prepare_mirror_plan
from dagfoundry.cdc.quality import check_batches, passed
from dagfoundry.cdc.sink_pickup import new_sink_files
from dagfoundry.cdc.tasks import CaptureHealthError, check_quality, report_capture_health
from dagfoundry.errors import DataQualityError


def batch(ids, batch_id):
    n = len(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()), landing.OP: ["c"] * n, landing.BATCH_ID: pa.array([batch_id] * n, pa.int64()),
        landing.SEQ: pa.array(range(n), pa.int64()), landing.LSN: pa.array([1] * n, pa.int64()),
        landing.SOURCE_TS_MS: pa.array([0] * n, pa.int64()), landing.DELETED: [False] * n,
    })


def test_batch_paths_follow_the_contract(tmp_path):
    path = landing.batch_path(tmp_path, "shop", "public.orders", 42)
    assert path == tmp_path / "landing/shop/public.orders/batch_id=000000000042"
    assert landing.parse_batch_dir("batch_id=000000000042") == 42 and landing.parse_batch_dir("batch_id=42") is None


def test_batches_are_listed_in_order_and_ids_shared_per_source(tmp_path):
    assert landing.next_batch_id(tmp_path, "shop") == 1
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, 2], 1), ("id",))
    landing.write_batch(tmp_path, "shop", "public.b", 3, batch([1], 3), ("id",))
    landing.write_batch(tmp_path, "shop", "public.a", 2, batch([3], 2), ("id",))
    assert landing.list_batches(tmp_path, "shop", "public.a") == [1, 2]
    assert landing.list_batches(tmp_path, "shop", "public.a", after=1) == [2]
    assert landing.next_batch_id(tmp_path, "shop") == 4
    assert landing.read_manifest(tmp_path, "shop", "public.a", 1)["row_count"] == 2


def test_a_published_batch_is_immutable(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1], 1), ("id",))
    with pytest.raises(landing.LandingError, match="immutable"):
        landing.write_batch(tmp_path, "shop", "public.a", 1, batch([2], 1), ("id",))


def test_quality_check_passes_and_reports_figures(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, 2], 1), ("id",))
    assert check_batches(tmp_path, "shop", [1]) == {"public.a": {"1": {"rows": 2, "ops": {"c": 2}, "special_values": {}}}}


def test_null_key_fails_the_quality_check_with_figures(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, None, None], 1), ("id",))
    with pytest.raises(DataQualityError, match=r"shop/public.a batch 1: 2 of 3 rows have a null key column 'id'"):
        check_batches(tmp_path, "shop", [1])


def test_row_limit_fails_the_quality_check(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, 2, 3], 1), ("id",))
    with pytest.raises(DataQualityError, match="3 rows exceed the limit of 2"):
        check_batches(tmp_path, "shop", max_rows=2)


def test_truncate_marker_passes_without_a_key(tmp_path):
    rows = batch([1, None], 1).set_column(1, landing.OP, pa.array(["c", landing.TRUNCATE_OP]))
    landing.write_batch(tmp_path, "shop", "public.a", 1, rows, ("id",))
    assert check_batches(tmp_path, "shop", [1])["public.a"]["1"]["ops"] == {"c": 1, "t": 1}


def test_batch_landed_before_a_crash_is_checked_before_it_is_mirrored(tmp_path):
    # Batch 1 passed its check; batch 2 was landed and the run died before checking it.
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, 2], 1), ("id",))
    check_batches(tmp_path, "shop", [1])
    landing.write_batch(tmp_path, "shop", "public.a", 2, batch([3, None], 2), ("id",))
    assert passed(tmp_path, "shop", "public.a", 1) and not passed(tmp_path, "shop", "public.a", 2)
    plan, failed = plan_mirrors(tmp_path, "shop")
    assert plan is None and "batch 2: 1 of 2 rows have a null key" in failed["public.a"]
    assert not passed(tmp_path, "shop", "public.a", 2)


def test_a_failing_table_is_left_out_and_the_others_are_planned(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, None], 1), ("id",))
    landing.write_batch(tmp_path, "shop", "public.b", 1, batch([1, 2], 1), ("id",))
    quality = check_quality(str(tmp_path), "shop")
    assert set(quality["tables"]) == {"public.b"} and set(quality["failed_tables"]) == {"public.a"}
    plan_path, failed = plan_mirrors(tmp_path, "shop")
    plan = json.loads(Path(plan_path).read_text())
    assert [t["table_id"] for t in plan["tables"]] == ["public.b"] and plan["failed_tables"] == failed
    assert "public.a is not mirrored" in failed["public.a"] and "reset_offsets" in failed["public.a"]
    with pytest.raises(CaptureHealthError, match=r"public.a is not mirrored: CDC batch check failed for shop/public.a batch 1"):
        report_capture_health({"source": "shop"}, quality, {"tables": {}, "failed_tables": failed})


def test_unknown_toast_values_are_reported_without_failing(caplog):
    mirror = {"tables": {"public.a": {"unavailable_values": {"body": 3}}, "public.b": {"unavailable_values": {}}}}
    report = report_capture_health({"source": "shop"}, {"tables": {}, "failed_tables": {}}, mirror)
    assert report["unavailable_values"] == {"public.a": {"body": 3}}
    assert "public.a: body (3 rows)" in caplog.text and "REPLICA IDENTITY FULL" in caplog.text


def test_unchecked_good_batch_is_checked_by_the_mirror_plan(tmp_path):
    landing.write_batch(tmp_path, "shop", "public.a", 1, batch([1, 2], 1), ("id",))
    assert prepare_mirror_plan(tmp_path, "shop") is not None
    assert passed(tmp_path, "shop", "public.a", 1)


def test_sink_files_are_taken_in_kafka_offset_order_once(tmp_path):
    for name in ("shop.public.a+0+0000000100.json", "shop.public.a+0+0000000020.json", "shop.public.a+0+0000000003.json"):
        (tmp_path / name).write_text("{}\n")
    names = [p.name for p in new_sink_files(tmp_path, set())]
    assert names == ["shop.public.a+0+0000000003.json", "shop.public.a+0+0000000020.json", "shop.public.a+0+0000000100.json"]
    assert [p.name for p in new_sink_files(tmp_path, {"shop.public.a+0+0000000003.json"})][0].endswith("20.json")
