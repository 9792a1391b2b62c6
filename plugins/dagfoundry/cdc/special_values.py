"""Values a column's lake type cannot hold, and how they land without losing meaning.

Rules (``docs/cdc.md``, *Special values*):

- ``real``/``double``: NaN and ±Infinity arrive as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` and land as those floats (Parquet and Spark hold them).
- ``numeric`` without precision lands as text anyway: Debezium's ``NAN``,
  ``POSITIVE_INFINITY``, ``NEGATIVE_INFINITY`` become PostgreSQL's ``NaN``, ``Infinity``,
  ``-Infinity``.
- ``numeric(p,s)`` NaN, and ``date``/``timestamp``/``timestamptz`` values outside
  0001-01-01 .. 9999-12-31 (the range of Spark's and Python's types, which most readers
  use) including ``±infinity``: the typed column is **null** and the row's
  ``_df_special`` column (a JSON object) maps the column name to the value's text
  (``NaN``, ``infinity``, ``-infinity``, or an ISO-8601 date/time with a signed
  extended year such as ``+20000-01-01T00:00:00``). A null column whose name is not in
  ``_df_special`` is a real NULL.
- ``time`` lands as int64 microseconds since midnight, so ``24:00:00`` is 86,400,000,000.

Debezium sends ``±infinity`` dates and timestamps as sentinel numbers (below), which are
outside PostgreSQL's own range, so they cannot be mistaken for a real value.
"""

from __future__ import annotations

from typing import Any

#: epoch days and microseconds of 0001-01-01T00:00:00 and 9999-12-31T23:59:59.999999
MIN_DATE_DAYS, MAX_DATE_DAYS = -719_162, 2_932_896
MIN_TIMESTAMP_US, MAX_TIMESTAMP_US = -62_135_596_800_000_000, 253_402_300_799_999_999
#: PostgreSQL's earliest date (4714-11-24 BC) in epoch days: anything below is a sentinel
_PG_MIN_DATE_DAYS = -2_440_588
#: Debezium's numbers for ±infinity (snapshot and streaming use different ones)
_DATE_SENTINELS = {-622_191_234: "infinity", -625_821_272: "-infinity", -2_147_472_692: "infinity", -2_147_472_691: "-infinity"}
_TIMESTAMP_SENTINELS = {9_223_372_036_825_200_000: "infinity", -9_223_372_036_832_400_000: "-infinity"}
_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_NUMERIC_TEXT = {"NAN": "NaN", "POSITIVE_INFINITY": "Infinity", "NEGATIVE_INFINITY": "-Infinity"}
#: Debezium's spellings of numeric specials (what the fast path looks for)
NUMERIC_SPECIALS = tuple(_NUMERIC_TEXT)
_US_PER_DAY = 86_400_000_000


def convert(kind: str, pg_type: str, value: Any) -> tuple[Any, str | None]:
    """Return the value to land and, when the lake type cannot hold it, its text.

    :param kind: the column's landing kind (:class:`dagfoundry.cdc.source_schema.SourceColumn`)
    :param pg_type: the PostgreSQL type name
    :param value: the value as Debezium sent it (not None)
    :return: ``(value, None)`` for an ordinary value; ``(None, text)`` for a special one
    """
    if kind in ("float32", "float64"):
        return (_FLOATS[value], None) if isinstance(value, str) and value in _FLOATS else (value, None)
    if kind == "decimal":
        return (None, _NUMERIC_TEXT[value]) if value in _NUMERIC_TEXT else (value, None)
    if kind == "string" and pg_type == "numeric":
        return _NUMERIC_TEXT.get(value, value), None
    if kind == "date" and isinstance(value, int) and not MIN_DATE_DAYS <= value <= MAX_DATE_DAYS:
        return None, _DATE_SENTINELS.get(value) or (f"debezium:{value}" if value < _PG_MIN_DATE_DAYS else format_date(value))
    if kind == "timestamp" and isinstance(value, int) and not MIN_TIMESTAMP_US <= value <= MAX_TIMESTAMP_US:
        return None, _TIMESTAMP_SENTINELS.get(value) or format_timestamp(value)
    if kind == "timestamptz" and isinstance(value, str) and not _in_range_iso(value):
        return None, value
    return value, None


def _in_range_iso(text: str) -> bool:
    """Return whether an ISO-8601 instant from Debezium has a year in 1..9999."""
    return text[:1].isdigit() and not text.startswith("0000")


def format_date(days: int) -> str:
    """Return epoch days as an ISO-8601 date (proleptic Gregorian, signed extended year)."""
    year, month, day = _civil_from_days(days)
    return f"{_year(year)}-{month:02d}-{day:02d}"


def format_timestamp(micros: int) -> str:
    """Return epoch microseconds as an ISO-8601 local date-time (signed extended year)."""
    days, rest = divmod(micros, _US_PER_DAY)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{format_date(days)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def _year(year: int) -> str:
    if 0 <= year <= 9999:
        return f"{year:04d}"
    return f"{'+' if year > 0 else '-'}{abs(year):04d}"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Return (year, month, day) of epoch days, any year (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day
