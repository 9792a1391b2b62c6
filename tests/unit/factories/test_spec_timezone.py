"""``timezone:`` makes a cron schedule run at local wall-clock time, across daylight-saving changes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dagfoundry.dag_files import build_dag
from dagfoundry.errors import SpecErrors

SPEC = "kind: lake_compaction\nname: berlin_compaction\ntables: [events/a]\nschedule: '30 6 * * *'\ntimezone: {tz}\n"


def _runs_after(dag_timetable: object, first: datetime, count: int) -> list[datetime]:
    """Ask the scheduler's timetable (serialized and decoded as Airflow does) for the next runs."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = decode_timetable(encode_timetable(dag_timetable))
    restriction = TimeRestriction(earliest=first, latest=None, catchup=True)
    runs, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        runs.append(info.run_after)
        last = DataInterval(info.run_after, info.run_after)
    return runs


def test_a_local_cron_schedule_keeps_its_wall_clock_time_across_dst(load):
    dag = build_dag(load(SPEC.format(tz="Europe/Berlin")))
    assert str(dag.timezone) == "Europe/Berlin"
    assert dag.start_date == datetime(2024, 12, 31, 23, tzinfo=timezone.utc)  # 2025-01-01 00:00 in Berlin
    # Berlin moves to summer time on 2025-03-30: 06:30 local is 05:30 UTC before and 04:30 UTC after.
    runs = _runs_after(dag.timetable, datetime(2025, 3, 28, tzinfo=timezone.utc), 3)
    assert [(r.day, r.hour, r.minute) for r in runs] == [(28, 5, 30), (29, 5, 30), (30, 4, 30)]


def test_an_unknown_timezone_is_a_spec_error(load):
    with pytest.raises(SpecErrors, match="'Mars/Olympus' is not a time zone"):
        load(SPEC.format(tz="Mars/Olympus"))
