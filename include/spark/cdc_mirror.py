"""Spark application: bring CDC lake mirrors up to date from landed change batches.

Usage: ``spark-submit cdc_mirror.py <plan.json>``

The plan (written by ``dagfoundry.cdc.mirror``) lists per table: the live mirror (or
null), the landed batch directories after the mirror's last applied batch, the key
columns, the output columns and a staging directory. For each table this job unions the
current mirror with the new events (cast to each column's widest type across batches),
applies TRUNCATE markers, carries unsent TOAST values forward from the key's previous
event, keeps the latest row per key by emission order ``(_df_batch_id, _df_seq)``, drops
deletes, checks that keys are unique and writes the new mirror to the staging directory.
It then writes ``result_path`` (row counts per table).
Publishing is the calling task's job (it verifies the staged output first).

Self-contained on purpose: the driver cannot import the ``dagfoundry`` package.
"""

from __future__ import annotations

import json
import os
import signal
import sys

BATCH_ID, SEQ, DELETED, OP = "_df_batch_id", "_df_seq", "_df_deleted", "_df_op"
TRUNCATE_OP = "t"
LSN, SOURCE_TS_MS, SPECIAL = "_df_lsn", "_df_source_ts_ms", "_df_special"
UNAVAILABLE = "_df_unavailable"
MIRROR_METADATA = (BATCH_ID, SEQ, LSN, SOURCE_TS_MS)
FAILPOINT_ENV = "DAGFOUNDRY_CDC_MIRROR_FAILPOINT"  # dagfoundry.cdc.mirror.FAILPOINT_ENV


def fail(message: str) -> None:
    print(f"cdc_mirror: {message}", file=sys.stderr)
    sys.exit(2)


def build_mirror(spark, table: dict):
    """Return the new mirror DataFrame of one table."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = table["key_columns"]
    columns = table["columns"]
    # Batches with one schema are read together; groups (and the mirror) are cast to the
    # widest type of each column before the union (a column widened between batches).
    groups = table.get("batch_groups") or [table["batch_paths"]]
    frames = [spark.read.parquet(*group) for group in groups]
    if table.get("mirror_path"):
        current = spark.read.parquet(table["mirror_path"]).withColumn(DELETED, F.lit(False))
        frames.insert(0, current)
    frames = widen_to_common_types(frames, table["table_id"])
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame, allowMissingColumns=True)
    missing = [c for c in (*keys, BATCH_ID, SEQ, DELETED) if c not in combined.columns]
    if missing:
        fail(f"table {table['table_id']}: landed batches lack columns {missing}")
    combined = drop_truncated(combined)
    combined = carry_forward_unavailable(combined, keys)
    latest_first = Window.partitionBy(*[F.col(k) for k in keys]).orderBy(F.col(BATCH_ID).desc(), F.col(SEQ).desc())
    latest = combined.withColumn("_df_rank", F.row_number().over(latest_first)).where("_df_rank = 1")
    present = latest.where(~F.col(DELETED))
    # The row's special values and its still-unknown (unsent TOAST) columns travel with it.
    special = [c for c in (SPECIAL, UNAVAILABLE) if c in combined.columns]
    output = [c for c in columns if c in combined.columns] + list(MIRROR_METADATA) + special
    return present.select(*[F.col(c) for c in output])


def carry_forward_unavailable(combined, keys):
    """Fill the values Debezium did not send (unchanged TOAST) with the key's previous value.

    ``_df_unavailable`` (a JSON array) names a row's columns that were not sent. Each gets
    the value of the latest earlier event of the same key in which it was sent (a mirror
    row counts, an explicit NULL counts); a column without one stays null and stays listed
    in ``_df_unavailable`` (unknown, flagged). Costs nothing when no row lists a column.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if UNAVAILABLE not in combined.columns:
        return combined
    missing = F.from_json(F.col(UNAVAILABLE), "array<string>")
    flagged = [
        row[0]
        for row in combined.where(F.col(UNAVAILABLE).isNotNull()).select(F.explode(missing)).distinct().collect()
        if row[0] in combined.columns
    ]
    if not flagged:
        return combined
    history = (
        Window.partitionBy(*[F.col(k) for k in keys])
        .orderBy(F.col(BATCH_ID), F.col(SEQ))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    unknown = []
    for column in sorted(flagged):
        absent = F.coalesce(F.array_contains(missing, column), F.lit(False))
        # A struct keeps an explicit NULL apart from "not sent" under ignorenulls.
        known = F.last(F.when(~absent, F.struct(F.col(column).alias("v"))), ignorenulls=True).over(history)
        combined = combined.withColumn(f"_df_known_{column}", known)
        unknown.append(F.when(absent & F.col(f"_df_known_{column}").isNull(), F.lit(column)))
        combined = combined.withColumn(column, F.when(absent, F.col(f"_df_known_{column}.v")).otherwise(F.col(column)))
    still = F.array_compact(F.array(*unknown))
    combined = combined.withColumn(UNAVAILABLE, F.when(F.size(still) > 0, F.to_json(still)))
    return combined.drop(*[f"_df_known_{c}" for c in flagged])


def widest_type(a, b):
    """Return the type both ``a`` and ``b`` cast to without loss, or None."""
    from pyspark.sql import types as T

    if a == b:
        return a
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    digits = {T.ByteType: 3, T.ShortType: 5, T.IntegerType: 10, T.LongType: 19}
    if isinstance(a, integral) and isinstance(b, integral):
        return max(a, b, key=lambda t: integral.index(type(t)))
    if isinstance(a, T.StringType) or isinstance(b, T.StringType):
        return T.StringType()  # a column retyped to text: every value has a text form
    if isinstance(a, (*integral, T.DecimalType)) and isinstance(b, (*integral, T.DecimalType)):
        def whole_and_scale(t):
            return (t.precision - t.scale, t.scale) if isinstance(t, T.DecimalType) else (digits[type(t)], 0)

        (wa, sa), (wb, sb) = whole_and_scale(a), whole_and_scale(b)
        scale = max(sa, sb)
        if max(wa, wb) + scale > 38:
            return None
        return T.DecimalType(max(wa, wb) + scale, scale)
    floating = (T.FloatType, T.DoubleType)
    if isinstance(a, floating) and isinstance(b, (*floating, *integral)) or isinstance(b, floating) and isinstance(a, integral):
        return T.DoubleType()
    return None


def widen_to_common_types(frames, table_id):
    """Cast every frame's columns to the widest type the column has in any frame.

    A column widened in the source (``int`` → ``bigint``, ``numeric(10,2)`` → ``numeric(12,4)``)
    lands with another type after the ``ALTER``; Parquet's schema merge refuses to read such
    batches together (``CANNOT_MERGE_INCOMPATIBLE_DATA_TYPE``).
    """
    from pyspark.sql import functions as F

    common = {}
    for frame in frames:
        for field in frame.schema.fields:
            if field.name not in common:
                common[field.name] = field.dataType
                continue
            wider = widest_type(common[field.name], field.dataType)
            if wider is None:
                fail(
                    f"table {table_id}: column {field.name} is {common[field.name].simpleString()} in some batches and "
                    f"{field.dataType.simpleString()} in others, with no type holding both; re-snapshot the table "
                    "(reset_offsets) after such a change"
                )
            common[field.name] = wider
    return [
        frame.select(*[
            F.col(f.name).cast(common[f.name]).alias(f.name) if f.dataType != common[f.name] else F.col(f.name)
            for f in frame.schema.fields
        ])
        for frame in frames
    ]


def drop_truncated(combined):
    """Drop every row older than the table's latest TRUNCATE marker, and the markers.

    A marker (``_df_op = 't'``, no key) means the table was empty at that point of the
    emission order ``(_df_batch_id, _df_seq)``; mirror rows carry their event's position.
    """
    from pyspark.sql import functions as F

    if OP not in combined.columns:
        return combined
    marker = combined.where(F.col(OP) == TRUNCATE_OP).agg(F.max(F.struct(BATCH_ID, SEQ)).alias("at")).first()
    if marker is None or marker["at"] is None:
        return combined
    batch, seq = marker["at"][BATCH_ID], marker["at"][SEQ]
    newer = (F.col(BATCH_ID) > F.lit(batch)) | ((F.col(BATCH_ID) == F.lit(batch)) & (F.col(SEQ) > F.lit(seq)))
    return combined.where(newer & (F.col(OP).isNull() | (F.col(OP) != TRUNCATE_OP)))


def reach_failpoint(point: str, table_id: str) -> None:
    """Die by SIGKILL (tests' fault injection) when ``point`` is armed for ``table_id``."""
    name, _, only = os.environ.get(FAILPOINT_ENV, "").partition("@")
    if name == point and (not only or only == table_id):
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        fail("usage: cdc_mirror.py <plan.json>")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    with open(argv[1], encoding="utf-8") as handle:
        plan = json.load(handle)
    spark = SparkSession.builder.appName("dagfoundry-cdc-mirror").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    # Standard Parquet timestamps (not legacy INT96), so every reader sees microseconds.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    results = {}
    for table in plan["tables"]:
        mirror = build_mirror(spark, table).cache()
        rows = mirror.count()
        distinct_keys = mirror.select(*table["key_columns"]).distinct().count()
        if rows != distinct_keys:
            fail(f"table {table['table_id']}: {rows} rows but {distinct_keys} distinct keys after applying batches")
        null_keys = mirror.where(" OR ".join(f"`{k}` IS NULL" for k in table["key_columns"])).count()
        if null_keys:
            fail(f"table {table['table_id']}: {null_keys} mirror rows have a null key column")
        sort_keys = [F.col(k) for k in table["key_columns"]]
        mirror.repartition(int(table.get("files", 1))).sortWithinPartitions(*sort_keys).write.mode("errorifexists").parquet(
            table["staging_path"]
        )
        results[table["table_id"]] = {"row_count": rows}
        mirror.unpersist()
        reach_failpoint("after_stage", table["table_id"])
    with open(plan["result_path"], "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
