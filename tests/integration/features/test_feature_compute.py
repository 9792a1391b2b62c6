"""Both engines on the same lake: point-in-time values, chunked == daily, re-runs, equal bytes.

Every test of the ``runs`` fixture runs once per engine: the embedded DuckDB (in process)
and real Spark (local, through spark-submit). Both run the one generated query, and
``test_both_engines_publish_byte_identical_partitions`` compares what they published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from feature_lake import DAILY_DATES, RANGE_END, RANGE_START, RERUN_DATE, build_lake, reference_features

from dagfoundry.features.compute import PART_FILE, compute_feature_range, offline_path
from dagfoundry.features.source_readiness import feature_dates

pytestmark = pytest.mark.integration


def partition_file(root: Path, view: str, feature_date: str) -> Path:
    return offline_path(root, view) / f"feature_date={feature_date}" / PART_FILE


TEST_CONF = {"spark.sql.shuffle.partitions": "2"}


ENGINES = ("duckdb", "spark")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request) -> str:
    return request.param


def compute(defn, root, start, end, engine):
    return compute_feature_range(defn, root, start, end, engine=engine, conf=TEST_CONF)


_RUNS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, events, engine):
    return runs_of(tmp_path_factory, events, engine)


def runs_of(tmp_path_factory, events, engine):
    """Run every job of this module once per engine: a chunked range, a re-run, daily runs.

    The daily runs read sources cut at the last daily date's cutoff, while the chunked run
    reads later events too: equal partitions prove both that chunked equals daily and that
    events at or after a cutoff never change a value.
    """
    if engine in _RUNS:
        return _RUNS[engine]
    orders, sessions = events
    base = tmp_path_factory.mktemp(f"features-{engine}")

    chunked_root = base / "chunked"
    defn = build_lake(chunked_root, orders, sessions)
    chunked = compute(defn, chunked_root, RANGE_START, RANGE_END, engine)
    before_rerun = {}
    for feature_date in chunked["published"]:
        path = partition_file(chunked_root, defn.name, feature_date)
        before_rerun[feature_date] = (path.read_bytes(), path.stat().st_ino)
    rerun = compute(defn, chunked_root, RERUN_DATE, RERUN_DATE, engine)

    daily_root = base / "daily"
    cutoff = pd.Timestamp(DAILY_DATES[-1]) + pd.Timedelta(days=1)
    daily_defn = build_lake(
        daily_root, orders[orders["ordered_at"] < cutoff], sessions[sessions["started_at"] < cutoff]
    )
    daily = [compute(daily_defn, daily_root, d, d, engine) for d in DAILY_DATES]
    _RUNS[engine] = {
        "defn": defn,
        "chunked_root": chunked_root,
        "chunked": chunked,
        "before_rerun": before_rerun,
        "rerun": rerun,
        "daily_root": daily_root,
        "daily": daily,
    }
    return _RUNS[engine]


def read_partition(root: Path, view: str, feature_date: str) -> pd.DataFrame:
    return pq.read_table(partition_file(root, view, feature_date)).to_pandas()


def test_chunked_run_publishes_one_sorted_file_per_date(runs):
    defn, root = runs["defn"], runs["chunked_root"]
    expected_dates = [d.isoformat() for d in feature_dates(RANGE_START, RANGE_END)]
    assert runs["chunked"]["published"] == expected_dates
    assert runs["chunked"]["latest"] == RANGE_END
    for feature_date in expected_dates:
        directory = partition_file(root, defn.name, feature_date).parent
        assert sorted(p.name for p in directory.iterdir()) == [PART_FILE]
        frame = read_partition(root, defn.name, feature_date)
        assert list(frame.columns) == ["user_id", *(f.name for f in defn.features)]
        assert frame["user_id"].is_monotonic_increasing and frame["user_id"].is_unique


def test_values_equal_a_brute_force_reference_on_every_date(runs, events):
    orders, sessions = events
    defn, root = runs["defn"], runs["chunked_root"]
    for day in feature_dates(RANGE_START, RANGE_END):
        got = read_partition(root, defn.name, day.isoformat()).reset_index(drop=True)
        want = reference_features(orders, sessions, day.isoformat()).reset_index(drop=True)
        assert got["user_id"].tolist() == want["user_id"].tolist(), day
        for column in want.columns:
            g, w = got[column].to_numpy(dtype=object), want[column].to_numpy(dtype=object)
            for user, a, b in zip(got["user_id"], g, w, strict=True):
                if b is None or (isinstance(b, float) and np.isnan(b)):
                    assert a is None or (isinstance(a, float) and np.isnan(a)), (day, column, user, a)
                elif isinstance(b, str):
                    assert a == b, (day, column, user, a, b)
                else:
                    assert a == pytest.approx(b, rel=1e-9, abs=1e-9), (day, column, user, a, b)


def test_daily_runs_write_byte_identical_partitions_to_the_chunked_run(runs):
    defn = runs["defn"]
    assert [r["published"] for r in runs["daily"]] == [[d] for d in DAILY_DATES]
    for feature_date in DAILY_DATES:
        daily = partition_file(runs["daily_root"], defn.name, feature_date).read_bytes()
        chunked = partition_file(runs["chunked_root"], defn.name, feature_date).read_bytes()
        assert daily == chunked, feature_date


def test_rerun_replaces_exactly_its_own_partition_with_the_same_bytes(runs):
    defn, root = runs["defn"], runs["chunked_root"]
    rerun_date = RERUN_DATE
    assert runs["rerun"]["published"] == [rerun_date]
    for feature_date, (content, inode) in runs["before_rerun"].items():
        path = partition_file(root, defn.name, feature_date)
        assert path.read_bytes() == content, feature_date
        if feature_date != rerun_date:
            assert path.stat().st_ino == inode, f"{feature_date} was rewritten by a run of {rerun_date}"
    assert partition_file(root, defn.name, rerun_date).stat().st_ino != runs["before_rerun"][rerun_date][1]
    kept = root / "_trash" / "features" / defn.name / f"feature_date={rerun_date}" / runs["rerun"]["version"]
    assert (kept / PART_FILE).read_bytes() == runs["before_rerun"][rerun_date][0]
    assert not any((root / "_staging").rglob("*.parquet")), "staging leftovers after publishing"


def test_daily_sources_really_lacked_the_later_events(runs, events):
    """Guard for the test above: the chunked run saw events after the daily cutoff."""
    orders, sessions = events
    cutoff = pd.Timestamp(DAILY_DATES[-1]) + pd.Timedelta(days=1)
    assert (orders["ordered_at"] == cutoff).any() and (orders["ordered_at"] > cutoff).any()
    assert (sessions["started_at"] >= cutoff).any()
    daily_orders = Path(runs["daily_root"]) / "mirror" / "orders"
    assert max(p.name for p in daily_orders.iterdir()) == f"event_date={DAILY_DATES[-1]}"


def test_both_engines_publish_byte_identical_partitions(tmp_path_factory, events):
    """DuckDB and Spark run one query: every published partition has the same bytes."""
    duck, spark = (runs_of(tmp_path_factory, events, engine) for engine in ENGINES)
    defn = duck["defn"]
    assert duck["chunked"]["published"] == spark["chunked"]["published"]
    for feature_date in duck["chunked"]["published"]:
        a = partition_file(duck["chunked_root"], defn.name, feature_date).read_bytes()
        b = partition_file(spark["chunked_root"], defn.name, feature_date).read_bytes()
        assert a == b, f"{feature_date}: DuckDB and Spark partitions differ"


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_a_failed_jobs_staging_is_removed_by_the_retry_and_a_parallel_runs_is_kept(tmp_path, events, engine):
    import json
    import os
    import time

    from dagfoundry.features.compute import (
        owner_key,
        prepare_feature_job,
        publish_feature_job,
        run_feature_job,
        staging_root,
    )

    orders, sessions = events
    defn = build_lake(tmp_path, orders, sessions)
    owner = owner_key("backfill__2024-01-20T00:00:00+00:00", RERUN_DATE, RERUN_DATE)
    # The first attempt's job fails (a source went missing) after its staging was made.
    failed = prepare_feature_job(defn, tmp_path, RERUN_DATE, RERUN_DATE, owner=owner)
    job = json.loads(Path(failed["job_file"]).read_text())
    job["definition"]["sources"][0]["path"] = str(tmp_path / "gone")
    Path(failed["job_file"]).write_text(json.dumps(job))
    with pytest.raises(Exception, match="(?i)spark|exit|no files found|gone"):
        run_feature_job(failed, engine=engine, conf=TEST_CONF)
    failed_dir = Path(failed["job_file"]).parent
    assert failed_dir.is_dir()
    # A chunk of a parallel backfill run is writing now; one of a run that died long ago is not.
    live = prepare_feature_job(defn, tmp_path, RANGE_START, RANGE_START, owner=owner_key("other_run", RANGE_START, RANGE_START))
    dead = prepare_feature_job(defn, tmp_path, RANGE_END, RANGE_END, owner=owner_key("dead_run", RANGE_END, RANGE_END))
    long_ago = time.time() - 25 * 3600
    for directory, _, files in os.walk(Path(dead["job_file"]).parent):
        for name in [".", *files]:
            os.utime(os.path.join(directory, name), (long_ago, long_ago))

    retry = prepare_feature_job(defn, tmp_path, RERUN_DATE, RERUN_DATE, owner=owner)
    assert sorted(retry["staging_removed"]) == sorted([failed["version"], dead["version"]])
    run_feature_job(retry, engine=engine, conf=TEST_CONF)
    assert publish_feature_job(defn, retry)["published"] == [RERUN_DATE]
    assert [p.name for p in staging_root(tmp_path, defn.name).iterdir()] == [live["version"]]
    assert partition_file(tmp_path, defn.name, RERUN_DATE).is_file()
