"""Spark application: bring CDC lake mirrors up to date from landed change batches.

Usage: ``spark-submit cdc_mirror.py <plan.json>``

The plan (written by ``dagfoundry.cdc.mirror``) lists per table: the live mirror (or
null), the landed batch directories after the mirror's last applied batch, the key
columns, the output columns and a staging directory. For each table this job unions the
current mirror with the new events, keeps the latest row per key by emission order
``(_df_batch_id, _df_seq)``, drops deletes, checks that keys are unique and writes the new
mirror to the staging directory. It then writes ``result_path`` (row counts per table).
Publishing is the calling task's job (it verifies the staged output first).

Self-contained on purpose: the driver cannot import the ``dagfoundry`` package.
"""

from __future__ import annotations

import json
import sys

BATCH_ID, SEQ, DELETED, OP = "_df_batch_id", "_df_seq", "_df_deleted", "_df_op"
TRUNCATE_OP = "t"
LSN, SOURCE_TS_MS, SPECIAL = "_df_lsn", "_df_source_ts_ms", "_df_special"
MIRROR_METADATA = (BATCH_ID, SEQ, LSN, SOURCE_TS_MS)


def fail(message: str) -> None:
    print(f"cdc_mirror: {message}", file=sys.stderr)
    sys.exit(2)


def build_mirror(spark, table: dict):
    """Return the new mirror DataFrame of one table."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = table["key_columns"]
    columns = table["columns"]
    events = spark.read.option("mergeSchema", "true").parquet(*table["batch_paths"])
    missing = [c for c in (*keys, BATCH_ID, SEQ, DELETED) if c not in events.columns]
    if missing:
        fail(f"table {table['table_id']}: landed batches lack columns {missing}")
    frames = [events]
    if table.get("mirror_path"):
        current = spark.read.parquet(table["mirror_path"]).withColumn(DELETED, F.lit(False))
        frames.insert(0, current)
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame, allowMissingColumns=True)
    combined = drop_truncated(combined, events)
    latest_first = Window.partitionBy(*[F.col(k) for k in keys]).orderBy(F.col(BATCH_ID).desc(), F.col(SEQ).desc())
    latest = combined.withColumn("_df_rank", F.row_number().over(latest_first)).where("_df_rank = 1")
    present = latest.where(~F.col(DELETED))
    # The row's special values (text of values its lake types cannot hold) travel with it.
    special = [SPECIAL] if SPECIAL in combined.columns else []
    output = [c for c in columns if c in combined.columns] + list(MIRROR_METADATA) + special
    return present.select(*[F.col(c) for c in output])


def drop_truncated(combined, events):
    """Drop every row older than the table's latest TRUNCATE marker, and the markers.

    A marker (``_df_op = 't'``, no key) means the table was empty at that point of the
    emission order ``(_df_batch_id, _df_seq)``; mirror rows carry their event's position.
    """
    from pyspark.sql import functions as F

    if OP not in events.columns:
        return combined
    marker = events.where(F.col(OP) == TRUNCATE_OP).agg(F.max(F.struct(BATCH_ID, SEQ)).alias("at")).first()
    if marker is None or marker["at"] is None:
        return combined
    batch, seq = marker["at"][BATCH_ID], marker["at"][SEQ]
    newer = (F.col(BATCH_ID) > F.lit(batch)) | ((F.col(BATCH_ID) == F.lit(batch)) & (F.col(SEQ) > F.lit(seq)))
    return combined.where(newer & (F.col(OP).isNull() | (F.col(OP) != TRUNCATE_OP)))


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
    with open(plan["result_path"], "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
