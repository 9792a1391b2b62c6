"""Spark application: compute a feature view's offline partitions for a set of feature dates.

Usage: ``spark-submit feature_compute.py --job JOB.json`` where the job file holds
``{"definition": <FeatureViewDefinition.to_dict()>, "dates": ["YYYY-MM-DD", ...],
"output": "<staging directory>"}``. The application writes
``<output>/feature_date=YYYY-MM-DD/part-*.parquet`` (one file per date, rows sorted by the
entity keys) plus ``<output>/_empty`` (an empty file with the same schema, for dates without
rows). The calling task verifies and publishes them; this file cannot import ``dagfoundry``.

One code path serves a one-day run and a 365-day backfill, so they agree by construction:

1. read events in ``[first date - lookback + 1 day, last date + 1 day)``;
2. aggregate them into daily partials per entity (count, sum, min, max, latest value), with
   sums of floating values folded in sorted order so they do not depend on the read order;
3. count distinct exactly: each (entity, value) pair contributes +1 from the day it is seen
   until its window expires or it is seen again, and the count is a running sum of those
   +1/-1 steps;
4. build the entity-date grid (entities with an event in the trailing TTL window);
5. compute every trailing window with ``rangeBetween`` over the day index and keep the grid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

EPOCH = dt.date(1970, 1, 1)
DAY = "_day"


def day_index(value: str) -> int:
    return (dt.date.fromisoformat(value) - EPOCH).days


def read_events(spark: SparkSession, source: dict, first_day: int, last_day: int) -> DataFrame:
    """Read one source's events with event dates in ``[first_day, last_day]`` (day indexes)."""
    first = EPOCH + dt.timedelta(days=first_day)
    end = EPOCH + dt.timedelta(days=last_day + 1)
    events = spark.read.parquet(source["path"])
    if source.get("partition_column"):
        part = F.col(source["partition_column"]).cast("date")
        events = events.where(part.between(F.lit(first), F.lit(end - dt.timedelta(days=1))))
    ts = F.col(source["event_time_column"]).cast("timestamp")
    start_ts = dt.datetime.combine(first, dt.time())
    end_ts = dt.datetime.combine(end, dt.time())
    return (
        events.withColumn("_ts", ts)
        .where((F.col("_ts") >= F.lit(start_ts)) & (F.col("_ts") < F.lit(end_ts)))
        .withColumn(DAY, F.datediff(F.to_date("_ts"), F.lit(EPOCH)))
    )


def value_column(feature: dict) -> Column:
    """Return the aggregated value of one feature for each event (null when filtered out)."""
    if feature.get("column"):
        value = F.col(feature["column"])
    elif feature.get("expression"):
        value = F.expr(feature["expression"])
    else:
        value = F.lit(1)
    if feature.get("filter_sql"):
        value = F.when(F.expr(feature["filter_sql"]), value)
    return value


def is_float(data_type: T.DataType) -> bool:
    return isinstance(data_type, (T.FloatType, T.DoubleType))


def daily_partials(events: DataFrame, keys: list[str], features: list[tuple[int, dict]]) -> DataFrame:
    """Aggregate events into one row per (entity, day) with the partials of each feature."""
    values = events.select(*keys, DAY, "_ts", *(value_column(f).alias(f"_v{i}") for i, f in features))
    aggs: list[Column] = [F.count(F.lit(1)).alias("_events")]
    for i, feature in features:
        v = F.col(f"_v{i}")
        fn = feature["function"]
        if fn in ("count", "avg"):
            aggs.append(F.count(v).alias(f"_p{i}_count"))
        if fn in ("sum", "avg"):
            if is_float(values.schema[f"_v{i}"].dataType) or fn == "avg":
                # A fold over the sorted values gives the same bits whatever the read order.
                folded = F.aggregate(F.array_sort(F.collect_list(v.cast("double"))), F.lit(0.0), lambda a, x: a + x)
                aggs.append(F.when(F.count(v) > 0, folded).alias(f"_p{i}_sum"))
            else:
                aggs.append(F.sum(v).alias(f"_p{i}_sum"))
        if fn == "min":
            aggs.append(F.min(v).alias(f"_p{i}_min"))
        if fn == "max":
            aggs.append(F.max(v).alias(f"_p{i}_max"))
        if fn == "last":
            latest = F.when(v.isNotNull(), F.struct(F.col("_ts").alias("t"), v.alias("v")))
            aggs.append(F.max(latest).alias(f"_p{i}_last"))
    return values.groupBy(*keys, DAY).agg(*aggs)


def distinct_steps(events: DataFrame, keys: list[str], i: int, feature: dict) -> DataFrame:
    """Return +1/-1 steps per (entity, day) whose running sum is the distinct count."""
    window = int(feature["window_days"])
    seen = events.select(*keys, DAY, value_column(feature).alias("_v")).where(F.col("_v").isNotNull()).distinct()
    next_seen = F.lead(DAY).over(Window.partitionBy(*keys, "_v").orderBy(DAY))
    until = F.least(F.col(DAY) + window - 1, F.coalesce(next_seen - 1, F.col(DAY) + window - 1))
    spans = seen.withColumn("_until", until)
    steps = spans.select(*keys, DAY, F.lit(1).alias("_step")).unionByName(
        spans.select(*keys, (F.col("_until") + 1).alias(DAY), F.lit(-1).alias("_step"))
    )
    return steps.groupBy(*keys, DAY).agg(F.sum("_step").alias(f"_p{i}_steps"))


def entity_grid(active: DataFrame, keys: list[str], ttl: int, dates: DataFrame, first: int, last: int) -> DataFrame:
    """Return (entity, day) for each requested date on which the entity had an event within TTL."""
    next_active = F.lead(DAY).over(Window.partitionBy(*keys).orderBy(DAY))
    until = F.least(F.col(DAY) + ttl - 1, F.coalesce(next_active - 1, F.col(DAY) + ttl - 1))
    spans = active.withColumn("_from", F.greatest(F.col(DAY), F.lit(first))).withColumn(
        "_to", F.least(until, F.lit(last))
    )
    spans = spans.where(F.col("_from") <= F.col("_to"))
    grid = spans.select(*keys, F.explode(F.sequence("_from", "_to")).alias(DAY))
    return grid.join(F.broadcast(dates), DAY).withColumn("_in_grid", F.lit(True))


def window_value(i: int, feature: dict, keys: list[str]) -> Column:
    """Return the trailing-window value of one feature over the (entity, day) frame."""
    fn = feature["function"]
    ordered = Window.partitionBy(*keys).orderBy(DAY)
    trailing = ordered.rangeBetween(-(int(feature["window_days"]) - 1), 0)
    if fn == "count":
        return F.coalesce(F.sum(f"_p{i}_count").over(trailing), F.lit(0)).cast("long")
    if fn == "sum":
        return F.sum(f"_p{i}_sum").over(trailing)
    if fn == "avg":
        count = F.sum(f"_p{i}_count").over(trailing)
        return F.when(count > 0, F.sum(f"_p{i}_sum").over(trailing) / count).cast("double")
    if fn == "min":
        return F.min(f"_p{i}_min").over(trailing)
    if fn == "max":
        return F.max(f"_p{i}_max").over(trailing)
    if fn == "last":
        return F.max(f"_p{i}_last").over(trailing).getField("v")
    if fn == "count_distinct":
        running = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
        return F.coalesce(F.sum(f"_p{i}_steps").over(running), F.lit(0)).cast("long")
    raise ValueError(f"unknown aggregate function {fn!r}")


def compute_features(spark: SparkSession, definition: dict, dates: list[str]) -> DataFrame:
    """Return one row per (entity, feature date) with every feature, unsorted."""
    keys = list(definition["entity_keys"])
    wanted = sorted(day_index(d) for d in dates)
    first, last = wanted[0], wanted[-1]
    lookback = max(
        [definition["ttl_days"], *(f["window_days"] for f in definition["features"] if f["kind"] == "window")]
    )
    indexed = [(i, f) for i, f in enumerate(definition["features"]) if f["kind"] == "window"]
    default_source = definition["sources"][0]["name"]
    partials: list[DataFrame] = []
    active: list[DataFrame] = []
    for source in definition["sources"]:
        events = read_events(spark, source, first - lookback + 1, last)
        mine = [(i, f) for i, f in indexed if (f.get("source") or default_source) == source["name"]]
        plain = [(i, f) for i, f in mine if f["function"] != "count_distinct"]
        daily = daily_partials(events, keys, plain)
        active.append(daily.select(*keys, DAY))
        partials.append(daily.drop("_events"))
        partials.extend(distinct_steps(events, keys, i, f) for i, f in mine if f["function"] == "count_distinct")
    join_keys = [*keys, DAY]
    merged = reduce(lambda a, b: a.join(b, join_keys, "full_outer"), partials).where(F.col(DAY) <= last)
    days = spark.createDataFrame([(d,) for d in wanted], f"{DAY} int")
    grid = entity_grid(
        reduce(DataFrame.unionByName, active).distinct(), keys, definition["ttl_days"], days, first, last
    )
    frame = grid.join(merged, join_keys, "full_outer")
    frame = frame.select(
        *keys,
        DAY,
        "_in_grid",
        *(window_value(i, f, keys).alias(f["name"]) for i, f in indexed),
    ).where(F.col("_in_grid"))
    frame = frame.withColumn("feature_date", F.date_add(F.lit(EPOCH), F.col(DAY)))
    for feature in definition["features"]:
        if feature["kind"] == "sql":
            frame = frame.withColumn(feature["name"], F.expr(feature["expression"]))
    return frame.select(*keys, *(f["name"] for f in definition["features"]), "feature_date")


def write_partitions(frame: DataFrame, keys: list[str], output: str) -> None:
    """Write one file per feature date, rows sorted by entity keys, plus an empty schema file."""
    ordered = frame.repartition(F.col("feature_date")).sortWithinPartitions("feature_date", *keys)
    ordered.write.mode("overwrite").partitionBy("feature_date").parquet(output)
    frame.drop("feature_date").limit(0).coalesce(1).write.mode("overwrite").parquet(f"{output}/_empty")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job JSON file written by dagfoundry.features.compute")
    args = parser.parse_args()
    with open(args.job, encoding="utf-8") as fh:
        job = json.load(fh)
    definition = job["definition"]
    if not job["dates"]:
        # Every date was skipped (missing source partitions): nothing to compute or publish.
        return
    spark = (
        SparkSession.builder.appName(f"dagfoundry-features-{definition['name']}")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        frame = compute_features(spark, definition, job["dates"])
        write_partitions(frame, list(definition["entity_keys"]), job["output"])
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
