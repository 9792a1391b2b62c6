"""The Spark mirror's choice of a common type for a column retyped between batches."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T

from include.spark.cdc_mirror import widest_type


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (T.IntegerType(), T.LongType(), T.LongType()),
        (T.ShortType(), T.IntegerType(), T.IntegerType()),
        (T.DecimalType(10, 2), T.DecimalType(12, 4), T.DecimalType(12, 4)),
        (T.DecimalType(10, 2), T.DecimalType(8, 4), T.DecimalType(12, 4)),
        (T.IntegerType(), T.DecimalType(12, 2), T.DecimalType(12, 2)),
        (T.LongType(), T.DecimalType(10, 2), T.DecimalType(21, 2)),
        (T.FloatType(), T.DoubleType(), T.DoubleType()),
        (T.IntegerType(), T.StringType(), T.StringType()),
        (T.DateType(), T.IntegerType(), None),
        (T.DecimalType(38, 10), T.LongType(), T.DecimalType(38, 10)),
        (T.DecimalType(38, 20), T.LongType(), None),
    ],
)
def test_widest_type_holds_both(a, b, expected):
    assert widest_type(a, b) == expected
    assert widest_type(b, a) == expected
