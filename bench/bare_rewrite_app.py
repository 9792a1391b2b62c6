"""Benchmark-only Spark application: rewrite partitions with no verification or publishing.

The ceiling ``bench/compaction_bench.py`` compares compaction against: for each partition,
read its directory and write it as ``target`` files, the same layout compaction produces.
Usage: ``spark-submit bare_rewrite_app.py <jobs.json>`` with ``[{"input", "output", "target"}]``.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import SparkSession


def rewrite(spark: SparkSession, job: dict) -> None:
    frame = spark.read.parquet(job["input"])
    if frame.rdd.getNumPartitions() >= job["target"]:
        frame = frame.coalesce(job["target"])
    else:
        frame = frame.repartition(job["target"])
    frame.write.mode("overwrite").option("compression", "snappy").parquet(job["output"])


def main(jobs_file: str) -> None:
    # The same output as compaction's: no _SUCCESS marker, no .crc file beside each file.
    spark = (
        SparkSession.builder.appName("bench-bare-rewrite")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .getOrCreate()
    )
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    spark.sparkContext._jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf).setWriteChecksum(False)
    with open(jobs_file) as handle:
        jobs = json.load(handle)
    workers = max(1, min(4, spark.sparkContext.defaultParallelism))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: rewrite(spark, job), jobs))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
