"""The embedded engine's memory bound: a job under a tight memory_limit still completes, same bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from dagfoundry.features.compute import PART_FILE, compute_feature_range, offline_path
from dagfoundry.features.definition import FeatureViewDefinition, SourceTable, WindowAggregate

pytestmark = pytest.mark.integration

EVENTS = 1_000_000
START, END = "2024-01-01", "2024-04-29"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """One million events over 120 days: about 43 MB in memory, several times that in the query's state."""
    rng = np.random.default_rng(5)
    seconds = np.sort(rng.integers(0, 120 * 86400, EVENTS))
    ts = np.datetime64("2024-01-01", "s") + seconds.astype("timedelta64[s]")
    table = pa.table({
        "user_id": rng.integers(0, 5000, EVENTS),
        "amount": rng.gamma(2.0, 20.0, EVENTS).round(2),
        "category": pa.array(np.array([f"c{i}" for i in range(20)])[rng.integers(0, 20, EVENTS)]),
        "event_time": pa.array(ts.astype("datetime64[us]")),
        "event_date": pa.array(ts.astype("datetime64[D]").astype(str)),
    })
    target = tmp_path_factory.mktemp("memory") / "events"
    ds.write_dataset(table, target, format="parquet", partitioning=ds.partitioning(
        pa.schema([("event_date", pa.string())]), flavor="hive"))
    return target


def view(source: Path) -> FeatureViewDefinition:
    return FeatureViewDefinition(
        name="bounded",
        entity_keys=("user_id",),
        sources=(SourceTable("events", str(source), "event_time", partition_column="event_date"),),
        features=(
            WindowAggregate("events_7d", "count", None, 7),
            WindowAggregate("amount_sum_30d", "sum", "amount", 30),
            WindowAggregate("last_category", "last", "category", 30),
            WindowAggregate("categories_7d", "count_distinct", "category", 7),
        ),
        ttl_days=30,
    )


def published(lake: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(offline_path(lake, "bounded").glob(f"*/{PART_FILE}"))}


def test_a_job_under_a_tight_memory_limit_completes_with_the_same_bytes(tmp_path, source):
    unbounded, bounded = tmp_path / "unbounded", tmp_path / "bounded"
    compute_feature_range(view(source), unbounded, START, END, engine="duckdb")
    spill = tmp_path / "spill"
    compute_feature_range(view(source), bounded, START, END, engine="duckdb",
                          duckdb={"memory_limit": "128MB", "threads": 1, "temp_directory": str(spill)})
    want = published(unbounded)
    assert len(want) == 120 and published(bounded) == want


def test_the_memory_limit_is_applied(tmp_path, source):
    """Guard for the test above: far below what the job needs, DuckDB refuses instead of growing."""
    with pytest.raises(Exception, match="(?i)out of memory"):
        compute_feature_range(view(source), tmp_path / "lake", START, END, engine="duckdb",
                              duckdb={"memory_limit": "16MB", "threads": 1})
    shutil.rmtree(tmp_path / "lake", ignore_errors=True)
