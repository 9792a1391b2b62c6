"""The feature job as ONE SQL query, written once and generated for each engine.

:func:`feature_query` writes the query in Spark SQL from a view definition, the feature
dates and the types of the values it aggregates; :func:`dagfoundry.lake.dialects.for_engine`
turns it into the dialect of the engine that runs it (SQLGlot transpiles Spark SQL to DuckDB). Spark runs
``include/spark/feature_compute.py`` with the Spark text, the embedded engine runs the
DuckDB text in-process (:mod:`dagfoundry.features.duckdb_compute`): one definition, so both
engines agree by construction and a test compares their partitions byte for byte.

The query reads views ``src_<source name>`` (each engine registers them over the source's
Parquet files) and returns one row per (entity, feature date): the entity keys, every
feature, ``feature_date``. Steps, as CTEs:

1. ``ev_<s>``: events of source ``s`` in ``[first date - lookback + 1, last date]`` by UTC day
   (``_day``: days since 1970-01-01), with each feature's value (null when filtered out);
2. ``daily_<s>``: per (entity, day) partials: count, sum, min, max, latest value. Sums of
   floating values are folded over the sorted values from ``0.0``, so their bits depend on
   neither the read order nor the engine. Features of one value share its partials (one
   sorted list per day for every float sum and average of ``amount``);
3. ``steps_<i>``: exact count distinct: each (entity, value) pair contributes +1 from the day
   it is seen until its window expires or it is seen again; the count is a running sum;
4. ``grid``: (entity, day) for each wanted date on which the entity had an event within TTL;
5. ``framed``: each distinct trailing-window aggregate once, over the day index (``RANGE
   BETWEEN w-1 PRECEDING AND CURRENT ROW``; floating sums again folded in day order), and
   ``featured``: the features as expressions over them (an average divides the window's
   shared sum by its count).

Standard library only at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

EPOCH = dt.date(1970, 1, 1)
DAY = "_day"
#: Value types whose sums are folded in a fixed order (float addition is not associative).
FLOAT_TYPES = ("float", "double", "real", "float4", "float8")


def q(name: str) -> str:
    """Quote an identifier for Spark SQL (names are validated identifiers already)."""
    return f"`{name}`"


def day_index(value: str | dt.date) -> int:
    day = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return (day - EPOCH).days


def value_sql(feature: Mapping[str, Any]) -> str:
    """Return the value one event contributes to a feature (null when its filter is false)."""
    if feature.get("column"):
        value = q(feature["column"])
    elif feature.get("expression"):
        value = f"({feature['expression']})"
    else:
        value = "1"
    if feature.get("filter_sql"):
        value = f"CASE WHEN ({feature['filter_sql']}) THEN {value} END"
    return value


def _fold(array: str) -> str:
    """Left fold of a double array from 0.0 (Spark's ``aggregate``; DuckDB's ``list_reduce``)."""
    return f"aggregate({array}, CAST(0 AS DOUBLE), (acc, x) -> acc + x)"


def _sum_is_folded(feature: Mapping[str, Any], value_types: Mapping[str, str]) -> bool:
    kind = value_types.get(feature["name"], "").lower()
    return feature["function"] == "avg" or kind.startswith(FLOAT_TYPES)


def _partials(feature: Mapping[str, Any], j: int, value_types: Mapping[str, str]) -> dict[str, str]:
    """Return the daily partial columns (name -> aggregate) of one (not count distinct) feature.

    ``j`` numbers the feature's value: features aggregating the same value share ``_v<j>``
    and so share partials of the same name (one sorted list per day for all the float sums
    of ``amount``, not one per feature).
    """
    v, fn = f"_v{j}", feature["function"]
    out = {}
    if fn in ("count", "avg"):
        out[f"_p{j}_count"] = f"COUNT({v})"
    if fn in ("sum", "avg"):
        if _sum_is_folded(feature, value_types):
            out[f"_p{j}_fsum"] = f"CASE WHEN COUNT({v}) > 0 THEN {_fold(f'array_sort(collect_list(CAST({v} AS DOUBLE)))')} END"
        else:
            out[f"_p{j}_sum"] = f"CAST(SUM({v}) AS {value_types.get(feature['name']) or 'BIGINT'})"
    if fn == "min":
        out[f"_p{j}_min"] = f"MIN({v})"
    if fn == "max":
        out[f"_p{j}_max"] = f"MAX({v})"
    if fn == "last":
        out[f"_p{j}_last"] = f"MAX(CASE WHEN {v} IS NOT NULL THEN named_struct('t', _ts, 'v', {v}) END)"
    return out


def _window(feature: Mapping[str, Any], i: int, j: int, keys: str, value_types: Mapping[str, str],
            atom: Callable[[str], str]) -> str:
    """Return the trailing-window value of one feature over the (entity, day) frame.

    Window aggregates go through ``atom`` (which computes each distinct one once, as a column
    of ``framed``) and the feature is an expression over those columns: ``avg_30d`` reuses the
    30-day float sum that ``sum_30d`` computes.
    """
    fn = feature["function"]
    frame = f"OVER (PARTITION BY {keys} ORDER BY {DAY} RANGE BETWEEN {int(feature['window_days']) - 1} PRECEDING AND CURRENT ROW)"

    def folded_sum() -> str:
        return atom(f"CASE WHEN COUNT(_p{j}_fsum) {frame} > 0 THEN {_fold(f'collect_list(_p{j}_fsum) {frame}')} END")

    if fn == "count":
        return f"CAST(COALESCE({atom(f'SUM(_p{j}_count) {frame}')}, 0) AS BIGINT)"
    if fn == "sum":
        if _sum_is_folded(feature, value_types):
            return folded_sum()
        return f"CAST({atom(f'SUM(_p{j}_sum) {frame}')} AS {value_types.get(feature['name']) or 'BIGINT'})"
    if fn == "avg":
        count = atom(f"SUM(_p{j}_count) {frame}")
        return f"CASE WHEN {count} > 0 THEN CAST({folded_sum()} / {count} AS DOUBLE) END"
    if fn == "min":
        return atom(f"MIN(_p{j}_min) {frame}")
    if fn == "max":
        return atom(f"MAX(_p{j}_max) {frame}")
    if fn == "last":
        return f"{atom(f'MAX(_p{j}_last) {frame}')}.v"
    if fn == "count_distinct":
        running = f"OVER (PARTITION BY {keys} ORDER BY {DAY} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        return f"CAST(COALESCE({atom(f'SUM(_p{i}_steps) {running}')}, 0) AS BIGINT)"
    raise ValueError(f"unknown aggregate function {fn!r}")


def feature_query(definition: Mapping[str, Any], dates: Sequence[str], value_types: Mapping[str, str] | None = None) -> str:
    """Return the Spark SQL query computing a view's features for ``dates``.

    :param definition: :meth:`FeatureViewDefinition.to_dict` of the view
    :param dates: the feature dates (``YYYY-MM-DD``), at least one
    :param value_types: per window feature name, the SQL type of the value it aggregates
        (:func:`dagfoundry.features.duckdb_compute.value_types`); decides which sums are folded
        and the type integer sums keep
    """
    value_types = dict(value_types or {})
    keys = list(definition["entity_keys"])
    key_list = ", ".join(q(k) for k in keys)
    wanted = sorted(day_index(d) for d in dates)
    if not wanted:
        raise ValueError("a feature query needs at least one date")
    first, last = wanted[0], wanted[-1]
    lookback = max([definition["ttl_days"], *(f["window_days"] for f in definition["features"] if f["kind"] == "window")])
    indexed = [(i, f) for i, f in enumerate(definition["features"]) if f["kind"] == "window"]
    default_source = definition["sources"][0]["name"]
    # Features of one source aggregating the same value share its column and partials.
    first_of: dict[tuple[str, str], int] = {}
    share = {i: first_of.setdefault((f.get("source") or default_source, value_sql(f)), i) for i, f in indexed
             if f["function"] != "count_distinct"}
    ctes: list[str] = []
    partials: list[str] = []
    actives: list[str] = []
    for source in definition["sources"]:
        name = source["name"]
        mine = [(i, f) for i, f in indexed if (f.get("source") or default_source) == name]
        start = EPOCH + dt.timedelta(days=first - lookback + 1)
        end = EPOCH + dt.timedelta(days=last + 1)
        where = [f"_ts >= TIMESTAMP '{start} 00:00:00'", f"_ts < TIMESTAMP '{end} 00:00:00'"]
        pruning = ""
        if source.get("partition_column"):
            part = f"CAST({q(source['partition_column'])} AS DATE)"
            pruning = f" WHERE {part} >= DATE '{start}' AND {part} <= DATE '{end - dt.timedelta(days=1)}'"
        values = "".join(f", {value_sql(f)} AS _v{i}" for i, f in mine if share.get(i, i) == i)
        ctes.append(
            f"ev_{name} AS (SELECT {key_list}, _ts, datediff(CAST(_ts AS DATE), DATE '{EPOCH}') AS {DAY}{values} "
            f"FROM (SELECT *, CAST({q(source['event_time_column'])} AS TIMESTAMP) AS _ts FROM src_{name}{pruning}) "
            f"WHERE {' AND '.join(where)})"
        )
        plain = [(i, f) for i, f in mine if f["function"] != "count_distinct"]
        daily = {"_events": "COUNT(1)"}
        for i, f in plain:
            daily.update(_partials(f, share[i], value_types))
        aggs = ", ".join(f"{expr} AS {name}" for name, expr in daily.items())
        ctes.append(f"daily_{name} AS (SELECT {key_list}, {DAY}, {aggs} FROM ev_{name} GROUP BY {key_list}, {DAY})")
        partials.append(f"daily_{name}")
        actives.append(f"SELECT {key_list}, {DAY} FROM daily_{name}")
        for i, f in mine:
            if f["function"] != "count_distinct":
                continue
            w = int(f["window_days"])
            until = f"LEAST({DAY} + {w - 1}, COALESCE(LEAD({DAY}) OVER (PARTITION BY {key_list}, _v ORDER BY {DAY}) - 1, {DAY} + {w - 1}))"
            ctes.append(
                f"spans_{i} AS (SELECT {key_list}, {DAY}, {until} AS _until FROM "
                f"(SELECT DISTINCT {key_list}, {DAY}, _v{i} AS _v FROM ev_{name} WHERE _v{i} IS NOT NULL))"
            )
            ctes.append(
                f"steps_{i} AS (SELECT {key_list}, {DAY}, SUM(_step) AS _p{i}_steps FROM ("
                f"SELECT {key_list}, {DAY}, 1 AS _step FROM spans_{i} UNION ALL "
                f"SELECT {key_list}, _until + 1 AS {DAY}, -1 AS _step FROM spans_{i}) GROUP BY {key_list}, {DAY})"
            )
            partials.append(f"steps_{i}")
    join_keys = f"{key_list}, {DAY}"
    merged = f"SELECT * FROM {partials[0]}" + "".join(f" FULL OUTER JOIN {p} USING ({join_keys})" for p in partials[1:])
    ctes.append(f"merged AS (SELECT * FROM ({merged}) WHERE {DAY} <= {last})")
    ttl = int(definition["ttl_days"])
    next_active = f"LEAD({DAY}) OVER (PARTITION BY {key_list} ORDER BY {DAY})"
    ctes.append(
        f"active AS (SELECT {key_list}, {DAY}, GREATEST({DAY}, {first}) AS _from, "
        f"LEAST({DAY} + {ttl - 1}, COALESCE({next_active} - 1, {DAY} + {ttl - 1}), {last}) AS _to "
        f"FROM (SELECT DISTINCT * FROM ({' UNION ALL '.join(actives)})))"
    )
    day_set = ", ".join(str(d) for d in wanted)
    ctes.append(
        f"grid AS (SELECT * FROM (SELECT {key_list}, explode(sequence(_from, _to)) AS {DAY} FROM active "
        f"WHERE _from <= _to) WHERE {DAY} IN ({day_set}))"
    )
    atoms: dict[str, str] = {}

    def atom(expr: str) -> str:
        return atoms.setdefault(expr, f"_w{len(atoms)}")

    windows = [f"{_window(f, i, share.get(i, i), key_list, value_types, atom)} AS {q(f['name'])}" for i, f in indexed]
    framed = (
        f"SELECT {key_list}, {DAY}, _in_grid{''.join(f', {e} AS {a}' for e, a in atoms.items())} FROM "
        f"(SELECT *, TRUE AS _in_grid FROM grid) FULL OUTER JOIN merged USING ({join_keys})"
    )
    names = [f["name"] for f in definition["features"]]
    sql_features = {f["name"]: f["expression"] for f in definition["features"] if f["kind"] == "sql"}
    outputs = ", ".join(f"({sql_features[n]}) AS {q(n)}" if n in sql_features else q(n) for n in names)
    ctes.append(f"framed AS ({framed})")
    ctes.append(f"featured AS (SELECT {key_list}, {DAY}{''.join(', ' + w for w in windows)} FROM framed WHERE _in_grid)")
    body = (
        f"SELECT {key_list}, {outputs}, CAST(date_add(DATE '{EPOCH}', {DAY}) AS DATE) AS feature_date "
        f"FROM featured"
    )
    return "WITH " + ",\n".join(ctes) + "\n" + body
