"""Fault injection: the publishing process is SIGKILLed at each step; nothing is lost, and
the next run completes the work. One Spark application writes all the staged versions,
one more redoes the partition killed before verification.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
from small_files import age_tree, data_files, partition_rows, write_small_files

from dagfoundry.compaction import CompactionSettings, plan_step, publish_step, report_step
from dagfoundry.compaction.failpoints import ENV_VAR, POINTS
from dagfoundry.spark_submit import submit_spark_app

pytestmark = pytest.mark.integration

PARTITION = "dt=2024-02-01"


def _publish_killed_at(point: str, batch_file: str, key: str) -> subprocess.CompletedProcess:
    code = "import sys; from dagfoundry.compaction import publish_step; publish_step(sys.argv[1])"
    env = {**os.environ, ENV_VAR: f"{point}@{key}"}
    return subprocess.run([sys.executable, "-c", code, batch_file], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def faults(tmp_path_factory, spark_available):
    lake = tmp_path_factory.mktemp("lake")
    before, input_bytes = {}, {}
    for index, point in enumerate(POINTS):
        directory = lake / "faults" / point / PARTITION
        write_small_files(directory, files=400, rows=25, first_id=index * 10**5, seed=index)
        before[point] = partition_rows(directory)
        input_bytes[point] = sum(os.path.getsize(directory / n) for n in data_files(directory))
    age_tree(lake / "faults", 7200)
    settings = CompactionSettings(
        lake_root=lake, tables=("faults/*",), target_file_bytes=1024 * 1024, sort_columns=("id",),
        max_partitions_per_batch=1, abandon_staging_after_seconds=0,
    )
    plan = plan_step(settings, version="v1")
    submit_spark_app("compaction_rewrite", [f for args in plan["spark_args"] for f in args])
    killed = {}
    for batch_file, keys in zip(plan["batch_files"], plan["batches"]):
        point = keys[0].split("/")[1]
        process = _publish_killed_at(point, batch_file, keys[0])
        live = lake / keys[0]
        killed[point] = {"returncode": process.returncode, "stderr": process.stderr[-2000:],
                         "rows": partition_rows(live), "files": data_files(live)}
    next_plan = plan_step(settings, version="v2")
    submit_spark_app("compaction_rewrite", [f for args in next_plan["spark_args"] for f in args])
    published = [publish_step(f) for f in next_plan["batch_files"]]
    return {"lake": lake, "before": before, "bytes": input_bytes, "killed": killed, "plan": plan,
            "next_plan": next_plan, "published": published, "settings": settings}


@pytest.mark.parametrize("point", POINTS)
def test_kill_leaves_the_partition_complete_and_readable(faults, point):
    killed = faults["killed"][point]
    assert killed["returncode"] == -9, f"the fail point {point} was not reached: {killed['stderr']}"
    assert killed["rows"] == faults["before"][point]
    expected_files = 400 if point != "after_exchange" else math.ceil(faults["bytes"][point] / 2**20)
    assert len(killed["files"]) == expected_files


def test_next_run_resumes_verified_work_and_redoes_the_rest(faults):
    recovered = {a["key"].split("/")[1]: a["action"] for a in faults["next_plan"]["recovered"]}
    assert recovered == {"after_write": "discarded", "after_verify": "published",
                         "during_publish": "published", "after_exchange": "published"}
    assert faults["next_plan"]["batches"] == [[f"faults/after_write/{PARTITION}"]]


@pytest.mark.parametrize("point", POINTS)
def test_after_the_next_run_every_partition_is_compacted_with_identical_content(faults, point):
    live = faults["lake"] / "faults" / point / PARTITION
    assert partition_rows(live) == faults["before"][point]
    assert len(data_files(live)) == math.ceil(faults["bytes"][point] / 2**20)
    kept = faults["lake"] / "_trash" / "faults" / point / PARTITION
    assert [len(data_files(v)) for v in kept.iterdir()] == [400]
    staging = faults["lake"] / "_staging" / "faults" / point / PARTITION
    assert [p.name for p in staging.iterdir() if p.is_dir()] == [], "staging left behind"


def test_sorted_output_is_ordered_by_the_sort_column(faults):
    import pyarrow.parquet as pq

    live = faults["lake"] / "faults" / "after_verify" / PARTITION
    for name in data_files(live):
        ids = pq.read_table(live / name).column("id").to_pylist()
        assert ids == sorted(ids)


def test_report_counts_the_recovered_partition_of_the_next_run(faults):
    report = report_step(faults["settings"], version="v2")
    assert report["summary"]["partitions_published"] == 1
    assert report["partitions"][0]["key"] == f"faults/after_write/{PARTITION}"
