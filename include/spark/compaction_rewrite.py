"""Spark application: rewrite lake partitions into right-sized files and checksum both sides.

Usage: ``spark-submit compaction_rewrite.py <batch.json> [<batch.json> ...]``

Each batch file (written by ``dagfoundry.compaction.journal.stage_plan``) lists partitions
with their planned input files, a staging directory and a target file count. For each
partition the application

1. reads exactly the planned files (never the directory, so files that arrive later are
   not part of this rewrite and are carried over at publish time),
2. writes them to the staging directory as ``target_files`` files (coalesced, or
   range-partitioned and sorted when sort columns are given), observing the row count and
   an order-independent checksum of the input rows during the same pass,
3. reads the staged files back and computes the same figures over what is on disk,
4. records both figures, the schemas, the staged file list and the time of each step
   (``timings``: ``read_schema``, ``write``, ``read_back``) in the batch's result file.

It publishes nothing: the calling task verifies the figures and swaps directories (this
driver cannot import ``dagfoundry``). A partition that fails is recorded with its error and
the others continue; the application fails only when it cannot write its result.

Checksum: the exact sum (an unbounded integer, sent as a decimal string) of ``xxhash64``
over every column and its null flag (so ``(NULL, 1)`` and ``(1, NULL)`` differ). A sum is independent of row order and of
how rows are split across files; with the row count it detects lost, duplicated and
altered rows.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

#: Footer key under which Spark stores its own schema of a Parquet file.
SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


def main(batch_files: list[str]) -> None:
    spark = (
        SparkSession.builder.appName("dagfoundry-compaction-rewrite")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.sql.legacy.allowHashOnMapType", "true")
        # Spark's default INT96 timestamps read back in pyarrow, Trino... as tz-naive
        # nanoseconds: a compacted table would change type for every reader but Spark.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # Inputs are explicit file lists (thousands of paths); listing them in a Spark job
        # costs one task per path, while the driver stats them in milliseconds.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000000")
        .getOrCreate()
    )
    disable_local_checksum_files(spark)
    workers = max(1, min(4, spark.sparkContext.defaultParallelism))
    for batch_file in batch_files:
        with open(batch_file) as handle:
            batch = json.load(handle)
        # Small partitions use one core each; several at once keep every core busy.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(partial(rewrite_safely, spark, batch), batch["partitions"]))
        write_result(batch["result_path"], {"version": batch["version"], "partitions": results})
    spark.stop()


def disable_local_checksum_files(spark: SparkSession) -> None:
    """Stop Hadoop's local filesystem from writing ``.crc`` files beside each output file."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf).setWriteChecksum(False)


def rewrite_safely(spark: SparkSession, batch: dict, partition: dict) -> dict:
    started = time.monotonic()
    try:
        figures = rewrite_partition(spark, batch, partition)
        return {"key": partition["key"], "ok": True, "seconds": time.monotonic() - started, **figures}
    except Exception as exc:  # noqa: BLE001 - one partition's failure must not hide the others
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        return {"key": partition["key"], "ok": False, "error": message, "seconds": time.monotonic() - started}


def rewrite_partition(spark: SparkSession, batch: dict, partition: dict) -> dict:
    fmt = batch["output_format"]
    staging = partition["staging_dir"]
    target = int(partition["target_files"])
    started = time.monotonic()
    source = read_files(spark, partition["input_files"])
    columns = source.columns
    read = time.monotonic()
    observed_input = Observation(f"input-{partition['key']}")
    observed = source.observe(observed_input, *checksum_columns(source, columns))
    arranged = arrange(observed, target, batch["sort_columns"])
    (
        arranged.write.mode("overwrite")
        .format(fmt)
        .option("compression", batch["compression"])
        .save(staging)
    )
    remove_hidden_leftovers(staging)
    written = time.monotonic()
    staged = spark.read.format(fmt).load(staging)
    after = staged.agg(*checksum_columns(staged, columns)).first()
    before = observed_input.get
    return {
        "timings": {"read_schema": read - started, "write": written - read, "read_back": time.monotonic() - written},
        "rows_before": int(before["rows"]),
        "checksum_before": checksum_value(before),
        "rows_after": int(after["rows"]),
        "checksum_after": checksum_value(after),
        "schema_before": schema_fields(source),
        "schema_after": schema_fields(staged),
        "files": staged_files(staging),
    }


def read_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Read exactly ``paths`` (one format, by extension), merging differing Parquet schemas."""
    if paths[0].endswith(".orc"):
        return spark.read.orc(*paths)
    # Without mergeSchema Spark takes one file's schema and silently drops columns only other
    # files have (schema evolution), so both checksums would miss them. Merging costs a Spark
    # job over every footer; reading the footers here is several times cheaper, so merge only
    # when they differ.
    merge = "false" if parquet_schemas_uniform(paths) else "true"
    return spark.read.option("mergeSchema", merge).parquet(*paths)


def parquet_schemas_uniform(paths: list[str]) -> bool:
    """Return True when every file's footer declares exactly the schema of the first file.

    Compares the Parquet schema (names, physical and logical types, repetition) and the
    Spark schema some writers store beside it, which Spark prefers when it is there.
    """
    first_schema, first_spark = footer_schema(paths[0])
    for path in paths[1:]:
        schema, spark_schema = footer_schema(path)
        if spark_schema != first_spark or not schema.equals(first_schema):
            return False
    return True


def footer_schema(path: str) -> tuple:
    metadata = pq.read_metadata(path)
    return metadata.schema, (metadata.metadata or {}).get(SPARK_SCHEMA_KEY)


def checksum_columns(frame: DataFrame, columns: list[str]) -> list:
    parts = []
    for name in columns:
        column = frame[name]
        parts.extend([column, F.isnull(column)])
    row_hash = F.xxhash64(*parts) if parts else F.lit(0).cast("long")
    # Two exact long sums (high and low 32 bits) instead of one decimal(38,0) sum: the same
    # value (high * 2**32 + low) at a fraction of the cost, with no overflow below 2**31 rows.
    return [
        F.count(F.lit(1)).alias("rows"),
        F.coalesce(F.sum(F.shiftright(row_hash, 32)), F.lit(0)).alias("high"),
        F.coalesce(F.sum(row_hash.bitwiseAND(F.lit(0xFFFFFFFF))), F.lit(0)).alias("low"),
    ]


def checksum_value(row) -> str:
    """Return the exact sum of the row hashes from the two partial sums, as a decimal string."""
    return str(int(row["high"]) * 2**32 + int(row["low"]))


def arrange(frame: DataFrame, target: int, sort_columns: list[str]) -> DataFrame:
    """Lay the rows out in ``target`` partitions (one output file each)."""
    if sort_columns:
        return frame.repartitionByRange(target, *sort_columns).sortWithinPartitions(*sort_columns)
    # Coalescing avoids a shuffle; it cannot add partitions, so few large inputs repartition.
    if frame.rdd.getNumPartitions() >= target:
        return frame.coalesce(target)
    return frame.repartition(target)


def schema_fields(frame: DataFrame) -> list[list[str]]:
    # Parquet readers make every column nullable, so nullability is not compared.
    return [[f.name, f.dataType.simpleString()] for f in frame.schema.fields]


def remove_hidden_leftovers(directory: str) -> None:
    """Delete checksum and marker files some Hadoop versions still write."""
    for name in os.listdir(directory):
        if name.startswith((".", "_")) and os.path.isfile(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))


def staged_files(directory: str) -> list[dict]:
    return sorted(
        ({"name": name, "size": os.path.getsize(os.path.join(directory, name))} for name in os.listdir(directory)),
        key=lambda f: f["name"],
    )


def write_result(path: str, result: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: compaction_rewrite.py <batch.json> [<batch.json> ...]")
    main(sys.argv[1:])
