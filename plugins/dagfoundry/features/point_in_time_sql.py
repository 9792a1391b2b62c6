"""The point-in-time join as ONE SQL query, written in Spark SQL and run on either engine.

:func:`point_in_time_query` writes the query from the view's keys and features, the label
time column, the lag and the feature dates present in the offline store;
:func:`dagfoundry.lake.dialects.for_engine` turns it into DuckDB's dialect. DuckDB
runs it in process over the Arrow labels, Spark runs ``include/spark/training_set_join.py``
over the labels staged as Parquet: one definition, so the engines agree by construction
(``tests/integration/features/test_training_set_engines.py`` compares them).

The query reads two views the engine registers: ``labels`` (a row number ``_pit_row``, the
label time, the entity keys) and ``features`` (the offline store's rows with
``feature_date`` as a DATE). It returns ``_pit_row``, ``feature_date`` and the features, one
row per label, in no particular order (each runner restores the labels' order).

Why no ASOF JOIN (Spark has none) and no range join: a feature date ``d`` is complete at
``d + 1 day 00:00 UTC``, so a label whose bound ``t - lag`` falls on UTC day ``x`` sees
exactly the dates ``d <= x - 1``. Availability is a function of the bound's *day*, so the
query builds a calendar (one row per day from the first availability to the last, latest
date available on that day, a running MAX over a few hundred rows) and joins the labels to it
on their day: two equality (hash) joins, which both engines run in parallel, no sort of
the labels and no window over them. Days after the calendar see the last date, days before
it none. ``lag_days`` moves the day, which is exact because UTC days have 24 hours.

Standard library only at import time.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagfoundry.features.feature_sql import EPOCH, day_index, q

#: The labels' row number column: the runners restore the labels' order with it.
ROW = "_pit_row"


def point_in_time_query(
    keys: Sequence[str], feature_names: Sequence[str], time_column: str, lag_days: int, dates: Sequence[str]
) -> str:
    """Return the Spark SQL query joining each label to its entity's row of the latest complete date.

    :param keys: the view's entity key columns (in ``labels`` and ``features``)
    :param feature_names: the feature columns to return
    :param time_column: the labels' time column (a timestamp; naive values are UTC)
    :param lag_days: days between the features' cutoff and the label time (>= 0)
    :param dates: the feature dates in the offline store (``YYYY-MM-DD``), at least one
    """
    if not dates:
        raise ValueError("a point-in-time query needs at least one feature date")
    if lag_days < 0:
        raise ValueError(f"lag_days must be >= 0, got {lag_days}")
    present = sorted({day_index(d) for d in dates})
    first_seen, last_seen = present[0] + 1, present[-1] + 1
    available = ", ".join(f"({d})" for d in present)
    # calendar: per day x, the latest date d with d + 1 <= x (a running max over the days).
    calendar = (
        f"SELECT _x, CAST(date_add(DATE '{EPOCH}', _f) AS DATE) AS _date FROM ("
        f"SELECT s._x, MAX(a._f) OVER (ORDER BY s._x ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS _f "
        f"FROM (SELECT explode(sequence({first_seen}, {last_seen})) AS _x) s "
        f"LEFT JOIN (SELECT _f FROM VALUES {available} AS t(_f)) a ON a._f + 1 = s._x)"
    )
    key_list = ", ".join(q(k) for k in keys)
    bound_day = f"datediff(CAST(CAST({q(time_column)} AS TIMESTAMP) AS DATE), DATE '{EPOCH}') - {int(lag_days)}"
    probe = f"SELECT {q(ROW)}, {key_list}, LEAST({bound_day}, {last_seen}) AS _x FROM labels"
    chosen = f"SELECT p.{q(ROW)}, {', '.join(f'p.{q(k)}' for k in keys)}, c._date FROM probe p LEFT JOIN calendar c ON c._x = p._x"
    on_keys = " AND ".join(f"f.{q(k)} = l.{q(k)}" for k in keys)
    selected = "".join(f", f.{q(c)}" for c in feature_names)
    return (
        f"WITH calendar AS ({calendar}),\nprobe AS ({probe}),\nchosen AS ({chosen})\n"
        f"SELECT l.{q(ROW)}, l._date AS feature_date{selected} FROM chosen l "
        f"LEFT JOIN features f ON {on_keys} AND f.feature_date = l._date"
    )
