"""``make demo``'s later rounds land data the chain acts on again (no scheduler needed).

The end-to-end test (runtime/test_lifecycle.py) runs round 1 through a real scheduler; a
second round there would double its time. What a second round depends on beyond round 1 is
checked here: the late files make every day a compaction candidate again, even the day files
the previous round's compaction wrote minutes ago (the compaction chain stops at a no-op
run: it emits no Asset event, and nothing downstream starts).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from include.demo.order_events import TABLE
from include.demo.run_demo import DemoSize, prepare_events

pytestmark = pytest.mark.integration

SIZE = DemoSize(days=20, files_per_day=5, events_per_day=40, customers=60, label_history_days=3)


def _compaction_choices(lake: Path) -> dict[str, bool]:
    from dagfoundry.compaction.planner import plan_compaction
    from dagfoundry.compaction.settings import CompactionSettings

    settings = CompactionSettings(lake_root=lake, tables=(TABLE,), target_file_bytes=64 * 1024 * 1024,
                                  min_small_files=5, closed_after_seconds=2 * 3600)
    plan = plan_compaction(settings, version="test")
    return {d.partition: d.chosen for d in plan.decisions}


def test_a_second_round_makes_every_day_a_compaction_candidate_again(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    first = prepare_events(lake, 1, SIZE)
    assert first["files"] == SIZE.days * SIZE.files_per_day and first["labels"] > 0
    assert set(_compaction_choices(lake).values()) == {True}
    # What round 1's compaction leaves: one file per day, just written, in place of the small ones.
    for day in (lake / TABLE).iterdir():
        small = sorted(day.glob("*.parquet"))
        pq.write_table(pa.concat_tables([pq.read_table(f) for f in small]), day / "part-compacted.parquet")
        for path in small:
            path.unlink()
    assert set(_compaction_choices(lake).values()) == {False}, "a freshly compacted day is still open"

    second = prepare_events(lake, 2, SIZE)
    assert second["files"] == SIZE.days * (SIZE.files_per_day + 1)
    choices = _compaction_choices(lake)
    assert len(choices) == SIZE.days and set(choices.values()) == {True}, choices
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert second["last"] == yesterday and second["labels"] >= first["labels"]
