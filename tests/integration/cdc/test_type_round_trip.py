"""Every common PostgreSQL type, special values included, through the real embedded
Debezium capture and the Spark mirror, once through the initial snapshot and once through
streaming (Debezium converts the two paths differently). Each mirror value must equal the
PostgreSQL value in its documented lake form (``docs/cdc.md``, *PostgreSQL → Parquet
types*), and a value no lake type can hold must be null with its text in ``_df_special``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid

import pytest
from capture_process import run_capture

from dagfoundry.cdc.mirror import update_mirrors

pytestmark = pytest.mark.integration

#: slot names are cluster-wide: this module's prefixes (branch and test), unique per run
SLOT_PREFIXES = ("dagfoundry_cdcfix_types_",)
SOURCE = f"cdcfix_types_{uuid.uuid4().hex[:8]}"
TABLE = "public.every_type"

DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.every_type (
  id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric(12,3), nu numeric, r real, d double precision,
  b boolean, tx text, vc varchar(20), by bytea, u uuid, j json, jb jsonb, dt date, tm time, ttz timetz,
  ts timestamp, tstz timestamptz, iv interval, ia int[], ta text[], e mood, ip inet, rg int4range,
  ci cidr, mac macaddr, mac8 macaddr8, tsr tsrange, tstzr tstzrange, nr numrange, dr daterange, mo money, ch char(5));
"""
#: rows as SQL value lists (id is added); every special value of the issue has a row
BASE_ROWS = [
    "-32768, 2147483647, -9223372036854775808, 123456789.125, 1.000000000000000000001, 1.5, -2.25e300, true,"
    " 'Zoë 東京 😀', 'vär''char', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, \"x\"]}',"
    " '{\"b\": {\"c\": null}}', '2024-02-29', '12:34:56.789012', '12:34:56.5+05:30', '2024-01-02 03:04:05.678901',"
    " '2024-01-02 03:04:05.678901+02', '1 year 2 mons 3 days 04:05:06.5', '{1,NULL,3}', '{\"a\",\"b c\",NULL}', 'ok',"
    " '10.1.2.3/24', '[1,10)'",
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL",
    "0, 0, 0, 'NaN', 'NaN', 'NaN', 'NaN', false, '', '', '', NULL, 'null', '[]', 'infinity', '24:00:00', '00:00:00+00',"
    " 'infinity', 'infinity', '0 seconds', '{}', '{}', 'sad', '::1', 'empty'",
    "1, 1, 1, -0.001, 'Infinity', 'Infinity', 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-infinity',"
    " '00:00:00', NULL, '-infinity', '-infinity', '-1 days -00:00:01', NULL, NULL, 'happy', '192.168.0.1', NULL",
    "NULL, NULL, NULL, NULL, '-Infinity', '-Infinity', '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " '20000-01-01', '23:59:59.999999', NULL, '20000-01-01 00:00:00', '20000-01-01 00:00:00+00', NULL, NULL, NULL,"
    " NULL, NULL, NULL",
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '9999-12-31', NULL, NULL,"
    " '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL",
]
#: the network, range, money and char(n) columns of each row
MORE_ROWS = [
    "'10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', '[2024-01-01 00:00:00,2024-02-01 12:30:00)',"
    " '[2024-01-01 00:00:00+02,2024-02-01 12:30:00.5+00)', '(1.5,2.25]', '[2024-01-01,2024-12-31)', '1234.56', 'ab'",
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    "'::1/128', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00', 'empty', 'empty', 'empty', 'empty', '0', ''",
    "'2001:db8::/32', NULL, NULL, '(,2024-01-01 00:00:00]', '[-infinity,infinity)', '[,)', '[2024-01-01,infinity)',"
    " '-92233720368547758.08', 'abcde'",
    "'192.168.1.0/24', NULL, NULL, NULL, NULL, '[-1.000001,)', NULL, '92233720368547758.07', 'Zoë'",
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
]
ROWS = [f"{base}, {more}" for base, more in zip(BASE_ROWS, MORE_ROWS, strict=True)]
#: what ``_df_special`` must say for each special row (by position in ROWS)
SPECIALS = {
    2: {"n": "NaN", "dt": "infinity", "ts": "infinity", "tstz": "infinity"},
    3: {"dt": "-infinity", "ts": "-infinity", "tstz": "-infinity"},
    4: {"dt": "+20000-01-01", "ts": "+20000-01-01T00:00:00", "tstz": "+20000-01-01T00:00:00.000000Z"},
}
#: PostgreSQL expressions giving each column in its lake form (see docs/cdc.md). inet and cidr
#: are compared as PostgreSQL's full output text, prefix length included (PostgreSQL writes no
#: prefix for a single-host inet, /32 or /128, and neither does the lake); char(n) keeps its
#: blank padding; money is its amount as numeric text (no currency symbol, no locale).
EXPECTED_SQL = """
SELECT id, i2, i4, i8, CASE WHEN n = 'NaN' THEN NULL ELSE n END, nu::text, r, d, b, tx, vc, by, u::text, j::text,
  jb::text, CASE WHEN dt BETWEEN '0001-01-01' AND '9999-12-31' THEN dt END,
  (extract(epoch FROM tm) * 1000000)::bigint, (ttz AT TIME ZONE 'UTC')::time,
  CASE WHEN ts BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999' THEN ts END,
  CASE WHEN tstz BETWEEN '0001-01-01+00' AND '9999-12-31 23:59:59.999999+00' THEN tstz END,
  iv::text, to_json(ia)::text, to_json(ta)::text, e::text, ip, rg::text,
  ci, mac::text, mac8::text, tsr::text, tstzr::text, nr::text, dr::text, mo::numeric::text, ch
FROM public.every_type ORDER BY id
"""
COLUMNS = ["id", "i2", "i4", "i8", "n", "nu", "r", "d", "b", "tx", "vc", "by", "u", "j", "jb", "dt", "tm", "ttz", "ts",
           "tstz", "iv", "ia", "ta", "e", "ip", "rg", "ci", "mac", "mac8", "tsr", "tstzr", "nr", "dr", "mo", "ch"]


def _drop_own_slots(sql) -> None:
    """Drop inactive slots of this module left by a crashed run; never other tests' slots.

    The prefix is this module's only (not the branch's): another test module of this branch
    may be between two captures, its slot inactive but in use.
    """
    for prefix in SLOT_PREFIXES:
        rows = sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
                   (prefix.replace("_", r"\_") + "%",), fetch=True)
        for (slot,) in rows:
            sql("SELECT pg_drop_replication_slot(%s)", (slot,))


@pytest.fixture(scope="module")
def types_source(cdc_database, source_sql, tmp_path_factory):
    _drop_own_slots(source_sql)
    workdir = tmp_path_factory.mktemp("cdc-types")
    source_sql(DDL)
    yield {"workdir": workdir, "lake_root": workdir / "lake", "dbname": cdc_database}
    source_sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s AND active",
               (f"dagfoundry_{SOURCE}",))
    source_sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
               (f"dagfoundry_{SOURCE}",))


def _insert(sql, first_id: int) -> None:
    for offset, values in enumerate(ROWS):
        sql(f"INSERT INTO {TABLE} VALUES ({first_id + offset}, {values})")


def _capture_and_mirror(source) -> dict:
    job = {"source": SOURCE, "dbname": source["dbname"], "lake_root": str(source["lake_root"]), "signal_table": None,
           "tables": [[*TABLE.split("."), ["id"]]], "limits": {"idle_seconds": 3, "max_seconds": 120}}
    code, summary, err = run_capture(job, source["workdir"])
    assert code == 0, f"capture failed ({code}): {err[-3000:]}"
    update_mirrors(source["lake_root"], SOURCE, conf={"spark.sql.shuffle.partitions": "2"})
    return summary


def _same(column: str, expected, actual) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if column in ("r", "d"):
        return (math.isnan(expected) and math.isnan(actual)) or expected == actual or (
            column == "r" and math.isclose(expected, actual, rel_tol=1e-6))
    if column in ("j", "jb", "ia", "ta"):
        return json.loads(expected) == json.loads(actual)
    if column == "by":
        return bytes(expected) == actual
    if column == "ttz":  # Debezium sends timetz normalized to UTC, e.g. 07:04:56.5Z
        return dt.time.fromisoformat(actual.rstrip("Z")) == expected
    return expected == actual


def _assert_round_trip(source, sql, ids: range, label: str) -> None:
    import pyarrow.parquet as pq

    sql("SET intervalstyle = iso_8601")
    expected = {row[0]: dict(zip(COLUMNS, row)) for row in sql(EXPECTED_SQL, fetch=True) if row[0] in ids}
    mirror = {r["id"]: r for r in pq.read_table(source["lake_root"] / "mirror" / SOURCE / TABLE).to_pylist() if r["id"] in ids}
    assert sorted(mirror) == sorted(expected), f"{label}: mirror ids {sorted(mirror)} != source ids {sorted(expected)}"
    for row in mirror.values():  # an ISO-8601 duration: compare it as PostgreSQL reads it back
        row["iv"] = row["iv"] and sql("SELECT %s::interval::text", (row["iv"],), fetch=True)[0][0]
    wrong = []
    for key, row in expected.items():
        for column in COLUMNS:
            if not _same(column, row[column], mirror[key][column]):
                wrong.append(f"id {key} {column}: source {row[column]!r}, mirror {mirror[key][column]!r}")
        special = mirror[key]["_df_special"]
        want = SPECIALS.get(key - ids.start)
        if (json.loads(special) if special else None) != want:
            wrong.append(f"id {key} _df_special: {special!r}, expected {want!r}")
    assert not wrong, f"{label}:\n" + "\n".join(wrong)


def test_every_type_round_trips_through_snapshot_and_streaming(types_source, source_sql):
    _insert(source_sql, 100)
    first = _capture_and_mirror(types_source)
    assert first["rows_per_table"] == {TABLE: len(ROWS)}
    assert first["special_values"] == {TABLE: {"n": 1, "dt": 3, "ts": 3, "tstz": 3}}
    _assert_round_trip(types_source, source_sql, range(100, 100 + len(ROWS)), "initial snapshot")

    _insert(source_sql, 200)
    source_sql(f"UPDATE {TABLE} SET d = 'NaN', tm = '24:00:00' WHERE id = 100")
    second = _capture_and_mirror(types_source)
    assert second["special_values"] == {TABLE: {"n": 1, "dt": 3, "ts": 3, "tstz": 3}}
    _assert_round_trip(types_source, source_sql, range(200, 200 + len(ROWS)), "streaming")
    _assert_round_trip(types_source, source_sql, range(100, 100 + len(ROWS)), "snapshot rows after an update")
