"""Spark application: rewrite lake partitions into right-sized files.

Usage: ``spark-submit compaction_rewrite.py <batch.json> [<batch.json> ...]``

Each batch file (written by ``dagfoundry.compaction.journal.stage_plan``) lists partitions
with their planned input files, a staging directory and a target file count. For each
partition the application

1. reads exactly the planned files (never the directory, so files that arrive later are
   not part of this rewrite and are carried over at publish time), merging their schemas
   when their footers differ,
2. writes them to the staging directory as ``target_files`` files (coalesced, or
   range-partitioned and sorted when sort columns are given),
3. records the staged files (names and sizes) and the time of each step (``timings``:
   ``read_schema``, ``write``) in the batch's result file.

It neither verifies nor publishes: the publish task reads the planned and the staged files
back from disk with a second engine (DuckDB) and compares columns, row count and row
checksum before it swaps directories (``dagfoundry.compaction.verification``; this driver
cannot import ``dagfoundry``). A partition that fails is recorded with its error and the
others continue; the application fails only when it cannot write its result.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

#: Footer key under which Spark stores its own schema of a Parquet file.
SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


#: Settings this application needs, whatever the submitter says.
REQUIRED_CONF = {
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    # Inputs are explicit file lists (thousands of paths); listing them in a Spark job
    # costs one task per path, while the driver stats them in milliseconds.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
}
#: Defaults a spec's ``spark.conf`` may override. Spark's own default, INT96 timestamps,
#: reads back in pyarrow, DuckDB or Trino as time-zone-naive values: a table written with
#: TIMESTAMP_MICROS would change type for every reader but Spark. A table whose files
#: already hold INT96 keeps them with ``spark.sql.parquet.outputTimestampType: INT96``.
DEFAULT_CONF = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}


def main(batch_files: list[str]) -> None:
    builder = SparkSession.builder.appName("dagfoundry-compaction-rewrite")
    for key, value in REQUIRED_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    submitted = spark.sparkContext.getConf()
    for key, value in DEFAULT_CONF.items():
        if not submitted.contains(key):
            spark.conf.set(key, value)
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
    staging = partition["staging_dir"]
    started = time.monotonic()
    source = read_files(spark, partition["input_files"])
    read = time.monotonic()
    (
        arrange(source, int(partition["target_files"]), batch["sort_columns"])
        .write.mode("overwrite")
        .format(batch["output_format"])
        .option("compression", batch["compression"])
        .save(staging)
    )
    remove_hidden_leftovers(staging)
    return {
        "timings": {"read_schema": read - started, "write": time.monotonic() - read},
        "files": staged_files(staging),
    }


def read_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Read exactly ``paths`` (one format, by extension), merging differing Parquet schemas."""
    if paths[0].endswith(".orc"):
        return spark.read.orc(list(paths))
    # Without mergeSchema Spark takes one file's schema and silently drops columns only other
    # files have (schema evolution); verification would then fail. Merging costs a Spark
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


def arrange(frame: DataFrame, target: int, sort_columns: list[str]) -> DataFrame:
    """Lay the rows out in ``target`` partitions (one output file each)."""
    if sort_columns:
        return frame.repartitionByRange(target, *sort_columns).sortWithinPartitions(*sort_columns)
    # Coalescing avoids a shuffle; it cannot add partitions, so few large inputs repartition.
    if frame.rdd.getNumPartitions() >= target:
        return frame.coalesce(target)
    return frame.repartition(target)


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
