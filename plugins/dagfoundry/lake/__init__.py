"""The lake: plain Hive-style Parquet directories published atomically."""
