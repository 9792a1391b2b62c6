"""End to end on real services: PostgreSQL (logical replication) -> embedded Debezium ->
landing -> lake mirror (on each engine: DuckDB and Spark), over several runs of random changes, with the capture killed
mid-batch, a crash between landing and offset commit, a mirror step killed between batches
from before and after random ALTERs, an incremental re-snapshot and an offsets reset. After
every run the lake mirror equals the PostgreSQL table row for row.

The workload is drawn from a seed (printed; ``DAGFOUNDRY_CDC_SEED`` sets it): inserts,
updates (some changing the key), deletes and NULLs on three tables, one of them with the
common PostgreSQL types (numeric with NaN, unconstrained numeric with NaN/±Infinity, double
with NaN/±Infinity, text with large TOASTed values and updates leaving them unchanged,
jsonb, int[], uuid, timestamptz, date, time, enum), and random ALTERs between runs (add
column with or without a default, drop column, int -> bigint).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import signal
import string
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from capture_process import run_capture, run_mirror, start_capture
from mirror_reference import reference_mirror

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable, SourceConnection
from dagfoundry.cdc.embedded_capture import offsets_path
from dagfoundry.cdc.mirror import read_mirror_state, update_mirrors
from dagfoundry.cdc.offsets import reset_offsets
from dagfoundry.cdc.quality import check_batches
from dagfoundry.cdc.signals import request_incremental_snapshot

pytestmark = pytest.mark.integration

# Slot names are cluster-wide: a unique source keeps this test off other databases' slots.
SOURCE = f"shop_{uuid.uuid4().hex[:8]}"
SIGNAL_TABLE = "public.dagfoundry_cdc_signal"
TABLES = {"public.accounts": ("id",), "public.pairs": ("region", "n"), "public.typed": ("id",)}
TEXTS = ["Zoë", "ñandú", "東京", "Ünïcode ✓", "😀 emoji", "plain", "", "O'Brien \"q\"", "tab\tnew\nline"]
SEED = int(os.environ.get("DAGFOUNDRY_CDC_SEED", "20261124"))

DDL = """
CREATE TABLE public.accounts (
  id integer PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), rate numeric,
  opened timestamptz, updated timestamp, birthday date, active boolean, score double precision,
  small smallint, big bigint, tags text[], payload jsonb);
CREATE TABLE public.pairs (region text, n integer, amount numeric(18,4), note text, PRIMARY KEY (region, n));
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.typed (
  id integer PRIMARY KEY, w integer, amount numeric(12,3), exact numeric, ratio double precision, body text,
  doc jsonb, nums integer[], ref uuid, at timestamptz, day date, clock time, feeling mood);
"""


class Workload:
    """Random inserts, updates (some changing the key), deletes, NULLs, on the three tables."""

    def __init__(self, sql, rng: random.Random) -> None:
        self.sql, self.rng = sql, rng
        self.typed = TypedWorkload(sql, rng)
        self.reload()

    def reload(self) -> None:
        """Read the keys again (after changes made outside the workload)."""
        self.account_ids = {r[0] for r in self.sql("SELECT id FROM accounts", fetch=True)}
        self.pair_keys = {tuple(r) for r in self.sql("SELECT region, n FROM pairs", fetch=True)}
        self.next_id = max(self.account_ids, default=0) + 1
        self.typed.ids = {r[0] for r in self.sql("SELECT id FROM typed", fetch=True)}

    def _maybe(self, value):
        return None if self.rng.random() < 0.2 else value

    def _account_values(self):
        r = self.rng
        epoch = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        return (
            r.choice(TEXTS) + str(r.randint(0, 99)),
            self._maybe(Decimal(r.randint(-10**9, 10**9)) / 100),
            self._maybe(Decimal(f"{r.randint(-10**6, 10**6)}.{r.randint(0, 10**8):08d}")),
            self._maybe(epoch + dt.timedelta(microseconds=r.randint(0, 10**14))),
            self._maybe(dt.datetime(2021, 6, 1) + dt.timedelta(microseconds=r.randint(-10**13, 10**13))),
            self._maybe(dt.date(1950, 1, 1) + dt.timedelta(days=r.randint(0, 30000))),
            self._maybe(r.random() < 0.5),
            self._maybe(r.uniform(-1e6, 1e6)),
            self._maybe(r.randint(-32768, 32767)),
            self._maybe(r.randint(-2**62, 2**62)),
            self._maybe([r.choice(TEXTS) for _ in range(r.randint(0, 3))]),
            self._maybe(json.dumps({"k": r.choice(TEXTS), "v": r.randint(0, 9)})),
        )

    def insert_account(self):
        key, self.next_id = self.next_id, self.next_id + 1
        self.sql("INSERT INTO accounts VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", (key, *self._account_values()))
        self.account_ids.add(key)

    def step(self):
        r = self.rng
        if r.random() < 0.35:
            self.typed.step()
            return
        choice = r.random()
        if choice < 0.35 or len(self.account_ids) < 5:
            self.insert_account()
        elif choice < 0.6:
            key = r.choice(sorted(self.account_ids))
            self.sql(
                "UPDATE accounts SET owner=%s, balance=%s, rate=%s, opened=%s, updated=%s, birthday=%s, active=%s,"
                " score=%s, small=%s, big=%s, tags=%s, payload=%s WHERE id=%s", (*self._account_values(), key))
        elif choice < 0.7:
            old, new = r.choice(sorted(self.account_ids)), self.next_id
            self.next_id += 1
            self.sql("UPDATE accounts SET id=%s, owner=owner || '→' WHERE id=%s", (new, old))
            self.account_ids.discard(old)
            self.account_ids.add(new)
        elif choice < 0.8:
            key = r.choice(sorted(self.account_ids))
            self.sql("DELETE FROM accounts WHERE id=%s", (key,))
            self.account_ids.discard(key)
        elif choice < 0.9 or not self.pair_keys:
            key = (r.choice(["eu", "us", "ásia", "日本"]), r.randint(0, 10**6))
            if key not in self.pair_keys:
                self.sql("INSERT INTO pairs VALUES (%s,%s,%s,%s)", (*key, Decimal(r.randint(0, 10**9)) / 10**4, self._maybe(r.choice(TEXTS))))
                self.pair_keys.add(key)
        else:
            key = r.choice(sorted(self.pair_keys))
            if r.random() < 0.4:
                self.sql("DELETE FROM pairs WHERE region=%s AND n=%s", key)
                self.pair_keys.discard(key)
            else:
                new = (key[0], key[1] + 10**7)
                self.sql("UPDATE pairs SET n=%s, amount=amount+1, note=NULL WHERE region=%s AND n=%s", (new[1], *key))
                self.pair_keys.discard(key)
                self.pair_keys.add(new)

    def run(self, steps: int):
        for _ in range(steps):
            self.step()


class TypedWorkload:
    """Random changes over the common PostgreSQL types and random ALTERs on ``public.typed``.

    Updates set a random subset of columns, so a large (TOASTed) ``body`` is often left
    unchanged; an UPDATE of the key also rewrites ``body`` (with the key's history gone,
    an unsent TOAST value could only be flagged unknown, see docs/cdc.md, *TOAST*).
    """

    #: ADD COLUMN variants: (type and default clause, kind of the values the workload writes)
    ADDED = [("integer DEFAULT 7", "int"), ("integer", "int"), ("text NOT NULL DEFAULT 'fresh'", "text"),
             ("boolean DEFAULT true", "bool"), ("date DEFAULT '2024-02-29'", "date"), ("text", "text")]

    def __init__(self, sql, rng: random.Random) -> None:
        self.sql, self.rng = sql, rng
        self.kinds = {"w": "int", "amount": "numeric", "exact": "exact", "ratio": "float", "body": "body",
                      "doc": "json", "nums": "ints", "ref": "uuid", "at": "tstz", "day": "date", "clock": "time",
                      "feeling": "mood"}
        self.wide: set[str] = set()
        self.added = 0
        self.ids = {r[0] for r in sql("SELECT id FROM typed", fetch=True)}
        self.next_id = max(self.ids, default=0) + 1

    def _value(self, kind: str):
        r = self.rng
        if r.random() < 0.15:
            return None
        if kind == "int":
            return r.randint(-2**31, 2**31 - 1)
        if kind == "bigint":
            return r.randint(-2**62, 2**62)
        if kind == "numeric":
            return "NaN" if r.random() < 0.1 else Decimal(r.randint(-10**12 + 1, 10**12 - 1)) / 1000
        if kind == "exact":
            special = r.random()
            if special < 0.15:
                return r.choice(["NaN", "Infinity", "-Infinity"])
            return Decimal(f"{r.randint(-10**20, 10**20)}.{r.randint(0, 10**12):012d}")
        if kind == "float":
            return r.choice([math.nan, math.inf, -math.inf]) if r.random() < 0.15 else r.uniform(-1e12, 1e12)
        if kind == "body":  # large values, not compressible below TOAST's 2 KB threshold
            return "".join(r.choices(string.ascii_letters, k=r.randint(3000, 12000))) if r.random() < 0.3 else r.choice(TEXTS)
        if kind == "text":
            return r.choice(TEXTS)
        if kind == "json":
            return json.dumps({"k": r.choice(TEXTS), "n": r.randint(-99, 99), "l": [r.random() < 0.5, None]})
        if kind == "ints":
            return [r.choice([None, r.randint(-10**6, 10**6)]) for _ in range(r.randint(0, 4))]
        if kind == "uuid":
            return str(uuid.UUID(int=r.getrandbits(128), version=4))
        if kind == "tstz":
            return dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=r.randint(-12, 12)))) + \
                dt.timedelta(microseconds=r.randint(0, 10**15))
        if kind == "date":
            return dt.date(1900, 1, 1) + dt.timedelta(days=r.randint(0, 80000))
        if kind == "time":
            return (dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=r.randint(0, 86_400 * 10**6 - 1))).time()
        if kind == "mood":
            return r.choice(["sad", "ok", "happy"])
        if kind == "bool":
            return r.random() < 0.5
        raise AssertionError(kind)

    def _set(self, columns: list[str], where: str, params: tuple) -> None:
        assignments = ", ".join(f"{c} = %s" for c in columns)
        self.sql(f"UPDATE typed SET {assignments} WHERE {where}", (*[self._value(self.kinds[c]) for c in columns], *params))

    def insert(self) -> None:
        key, self.next_id = self.next_id, self.next_id + 1
        columns = sorted(self.kinds)
        self.sql(f"INSERT INTO typed (id, {', '.join(columns)}) VALUES (%s{', %s' * len(columns)})",
                 (key, *[self._value(self.kinds[c]) for c in columns]))
        self.ids.add(key)

    def step(self) -> None:
        r = self.rng
        choice = r.random()
        if choice < 0.3 or len(self.ids) < 5:
            self.insert()
            return
        key = r.choice(sorted(self.ids))
        others = sorted(c for c in self.kinds if c != "body")
        if choice < 0.65:  # body left alone: an unchanged TOAST value when it is large
            self._set(r.sample(others, r.randint(1, 3)), "id = %s", (key,))
        elif choice < 0.75:
            self._set(["body", *r.sample(others, r.randint(0, 1))], "id = %s", (key,))
        elif choice < 0.87:
            new, self.next_id = self.next_id, self.next_id + 1
            self.sql("UPDATE typed SET id = %s, body = body || '' WHERE id = %s", (new, key))
            self.ids.discard(key)
            self.ids.add(new)
        else:
            self.sql("DELETE FROM typed WHERE id = %s", (key,))
            self.ids.discard(key)

    def alter(self) -> str:
        """Apply one random ALTER (add, drop or widen a column); return it."""
        r = self.rng
        narrow = sorted(c for c, k in self.kinds.items() if k == "int")
        extra = sorted(c for c in self.kinds if c.startswith("extra_"))
        choice = r.random()
        if narrow and choice < 0.3:
            column = r.choice(narrow)
            statement = f"ALTER TABLE typed ALTER COLUMN {column} TYPE bigint"
            self.kinds[column] = "bigint"
        elif extra and choice < 0.55:
            column = r.choice(extra)
            statement = f"ALTER TABLE typed DROP COLUMN {column}"
            del self.kinds[column]
        else:
            self.added += 1
            column = f"extra_{self.added}"
            definition, kind = r.choice(self.ADDED)
            statement = f"ALTER TABLE typed ADD COLUMN {column} {definition}"
            self.kinds[column] = kind
        self.sql(statement)
        return statement

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()


def _column_kinds(sql, table_id: str) -> dict[str, str]:
    """Return the source table's columns (in order) with their PostgreSQL data types."""
    schema, table = table_id.split(".")
    return dict(sql(
        "SELECT column_name, CASE WHEN data_type = 'numeric' AND numeric_precision IS NULL THEN 'numeric text'"
        " ELSE data_type END FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position", (schema, table), fetch=True))


def _lake_form(kind: str, value):
    """Return a source or mirror value in one comparable form (docs/cdc.md, *PostgreSQL → Parquet types*)."""
    if value is None or isinstance(value, tuple):
        return value
    if kind in ("json", "jsonb", "ARRAY"):
        return json.loads(value) if isinstance(value, str) else value
    if kind == "numeric text":  # exact text in the mirror; NaN and ±Infinity as PostgreSQL writes them
        number = Decimal(str(value))
        return number if number.is_finite() else str(value)
    if kind == "numeric" and isinstance(value, Decimal) and value.is_nan():
        return ("special", "NaN")  # the mirror holds null and names it in _df_special
    if kind in ("double precision", "real") and math.isnan(value):
        return "NaN"
    if kind == "time without time zone" and isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + value.microsecond
    return value


def _source_rows(sql, table_id: str) -> dict[tuple, dict]:
    kinds = _column_kinds(sql, table_id)
    keys = TABLES[table_id]
    rows = {}
    for values in sql(f"SELECT * FROM {table_id}", fetch=True):
        row = {c: _lake_form(kinds[c], v) for c, v in zip(kinds, values)}
        rows[tuple(row[k] for k in keys)] = row
    return rows


def _normalized(rows: dict[tuple, dict], kinds: dict[str, str]) -> dict[tuple, dict]:
    """Return mirror rows with the source's current columns, specials and unknown values marked."""
    result = {}
    for key, row in rows.items():
        marks = {c: ("special", text) for c, text in json.loads(row.get("_df_special") or "{}").items()}
        marks.update({c: ("unknown",) for c in json.loads(row.get("_df_unavailable") or "[]")})
        result[key] = {c: _lake_form(kind, marks.get(c, row.get(c))) for c, kind in kinds.items()}
    return result


def _mirror_rows(lake_root: Path, table_id: str, kinds: dict[str, str]) -> dict[tuple, dict]:
    import pyarrow.parquet as pq

    live = lake_root / "mirror" / SOURCE / table_id
    keys = TABLES[table_id]
    return _normalized({tuple(r[k] for k in keys): r for r in pq.read_table(live).to_pylist()}, kinds)


def _assert_equal(expected: dict, actual: dict, what: str):
    missing = sorted(set(expected) - set(actual), key=str)[:5]
    extra = sorted(set(actual) - set(expected), key=str)[:5]
    differing = [k for k in expected if k in actual and expected[k] != actual[k]][:3]
    assert not (missing or extra or differing), (
        f"{what}: {len(missing)}+ missing keys {missing}, extra keys {extra}, "
        f"differing rows {[(expected[k], actual[k]) for k in differing]}"
    )


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def scenario(request, new_source_database, tmp_path_factory):
    """One source database and lake per mirror engine (the workload is the same: one seed)."""
    with new_source_database() as (cdc_database, source_sql):
        yield _scenario(request.param, cdc_database, source_sql, tmp_path_factory)


def _scenario(engine: str, cdc_database: str, source_sql, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp(f"cdc-{engine}")
    lake_root = workdir / "lake"
    source_sql(DDL)
    job = {
        "source": SOURCE, "dbname": cdc_database, "lake_root": str(lake_root), "signal_table": SIGNAL_TABLE,
        "tables": [[*t.split("."), list(k)] for t, k in TABLES.items()],
        "limits": {"idle_seconds": 3, "max_seconds": 180},
    }
    config = CaptureConfig(source=SOURCE, conn_id="unused", tables=tuple(
        CapturedTable(*t.split("."), k) for t, k in TABLES.items()), signal_table=SIGNAL_TABLE)
    connection = SourceConnection("127.0.0.1", 5432, cdc_database, "postgres")
    return {"workdir": workdir, "lake_root": lake_root, "job": job, "config": config, "connection": connection,
            "engine": engine, "sql": source_sql}


def _capture_ok(scenario) -> dict:
    code, summary, err = run_capture(scenario["job"], scenario["workdir"])
    assert code == 0, f"capture failed ({code}): {err[-3000:]}"
    return summary


def _check_run(scenario, sql, label: str):
    """Quality-check new batches, update the mirrors on the scenario's engine, compare with PostgreSQL."""
    lake_root = scenario["lake_root"]
    for table_id in TABLES:
        state = read_mirror_state(lake_root, SOURCE, table_id)
        check_batches(lake_root, SOURCE, tables=[table_id], after=state["last_batch_id"] if state else None)
    summary = update_mirrors(lake_root, SOURCE, engine=scenario["engine"], conf={"spark.sql.shuffle.partitions": "2"})
    assert summary["engine"] in (scenario["engine"], None), summary
    for table_id in TABLES:
        kinds = _column_kinds(sql, table_id)
        expected = _source_rows(sql, table_id)
        floor = json.loads((lake_root / "_cdc_state" / SOURCE / "mirror_floor.json").read_text())["floor_batch_id"] \
            if (lake_root / "_cdc_state" / SOURCE / "mirror_floor.json").exists() else None
        reference = reference_mirror(lake_root, SOURCE, table_id, after=floor - 1 if floor else None, with_special=True)
        _assert_equal(expected, _normalized(reference, kinds), f"{label}: reference over landed batches vs PostgreSQL {table_id}")
        _assert_equal(expected, _mirror_rows(lake_root, table_id, kinds), f"{label}: lake mirror vs PostgreSQL {table_id}")


def _wait_for_slot(sql, active: bool, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (f"dagfoundry_{SOURCE}",), fetch=True)
        if rows and rows[0][0] == active:
            return
        time.sleep(0.3)
    raise AssertionError(f"replication slot did not become active={active} within {timeout} s")


def test_randomized_runs_keep_mirror_equal_to_source(scenario):
    source_sql = scenario["sql"]
    print(f"randomized CDC workload on mirror engine {scenario['engine']}: DAGFOUNDRY_CDC_SEED={SEED}")
    rng = random.Random(SEED)
    lake_root = scenario["lake_root"]
    workload = Workload(source_sql, rng)
    for _ in range(150):
        workload.insert_account()
    for _ in range(60):
        workload.typed.insert()
    workload.run(100)

    # Run 1: initial snapshot.
    first = _capture_ok(scenario)
    assert first["batch_id"] == 1 and first["rows_per_table"]["public.accounts"] >= 150
    _check_run(scenario, source_sql, f"run 1 (seed {SEED})")

    # Run 2: random ALTERs, then a capture killed mid-batch (SIGKILL while streaming); a
    # normal run recovers.
    alters = [workload.typed.alter() for _ in range(rng.randint(1, 2))]
    workload.run(300)
    offsets_before = offsets_path(lake_root, SOURCE).read_bytes()
    batches_before = landing.next_batch_id(lake_root, SOURCE)
    process = start_capture({**scenario["job"], "limits": {"idle_seconds": 120, "max_seconds": 200}}, scenario["workdir"])
    _wait_for_slot(source_sql, active=True)
    time.sleep(3)
    workload.run(50)  # changes arriving while the doomed capture streams
    time.sleep(1)
    assert process.poll() is None, "the capture ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert landing.next_batch_id(lake_root, SOURCE) == batches_before, "a killed capture must not land a batch"
    assert offsets_path(lake_root, SOURCE).read_bytes() == offsets_before, "a killed capture must not commit offsets"
    try:
        _wait_for_slot(source_sql, active=False, timeout=15)
    except AssertionError:
        source_sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s",
                   (f"dagfoundry_{SOURCE}",))
        _wait_for_slot(source_sql, active=False)
    workload.run(100)
    _capture_ok(scenario)
    _check_run(scenario, source_sql, f"run 2, after a killed capture and {alters} (seed {SEED})")

    # Run 3: a batch landed (not mirrored) before random ALTERs; after them the process dies
    # after landing and before committing offsets, and the next run lands the same events
    # again; then the mirror step is killed (Spark driver or task process); the next mirror
    # run applies the batches from before and after the ALTERs together.
    workload.run(100)
    _capture_ok(scenario)
    alters = [workload.typed.alter() for _ in range(rng.randint(1, 2))]
    workload.run(200)
    offsets_before = offsets_path(lake_root, SOURCE).read_bytes()
    code, _, err = run_capture({**scenario["job"], "fault": "after_landing"}, scenario["workdir"])
    assert code == 17, f"fault injection did not fire: {code} {err[-2000:]}"
    faulted = landing.next_batch_id(lake_root, SOURCE) - 1
    assert offsets_path(lake_root, SOURCE).read_bytes() == offsets_before
    replay = _capture_ok(scenario)
    assert replay["batch_id"] == faulted + 1
    for table_id in TABLES:
        if faulted in landing.list_batches(lake_root, SOURCE, table_id):
            landed = landing.read_manifest(lake_root, SOURCE, table_id, faulted)["row_count"]
            assert replay["rows_per_table"].get(table_id, 0) >= landed, "the replay must re-deliver the faulted batch"
    pending = [t for t in sorted(TABLES) if landing.list_batches(
        lake_root, SOURCE, t, after=(read_mirror_state(lake_root, SOURCE, t) or {}).get("last_batch_id"))]
    failpoint = f"{rng.choice(['after_stage', 'after_publish'])}@{rng.choice(pending)}"
    code, err = run_mirror(lake_root, SOURCE, failpoint=failpoint, engine=scenario["engine"])
    assert code in (3, -9), f"the mirror fail point {failpoint} did not fire ({code}): {err[-2000:]}"
    _check_run(scenario, source_sql,
               f"run 3, after a crash before the offset commit, {alters} and a mirror killed at {failpoint} (seed {SEED})")

    # Run 4: incremental re-snapshot of one table through the signal table, mixed with changes
    # and an ALTER.
    alters = [workload.typed.alter()]
    request_incremental_snapshot(scenario["connection"], SIGNAL_TABLE, ["public.accounts"],
                                 captured_tables=list(TABLES))
    workload.run(150)
    resnap = _capture_ok(scenario)
    import pyarrow.parquet as pq

    batch = pq.read_table(landing.batch_path(lake_root, SOURCE, "public.accounts", resnap["batch_id"])).to_pylist()
    snapshot_rows = [e for e in batch if e[landing.OP] == "r"]
    assert snapshot_rows and all(e[landing.LSN] is None for e in snapshot_rows), "incremental snapshot rows carry no LSN"
    _check_run(scenario, source_sql, f"run 4, incremental re-snapshot and {alters} (seed {SEED})")

    # Run 5: offsets reset (slot dropped); rows deleted while nothing captures must vanish
    # from the mirror, which is rebuilt from the new snapshot.
    result = reset_offsets(scenario["config"], lake_root, connection=scenario["connection"])
    assert result["slot_dropped"] is True
    source_sql("DELETE FROM accounts WHERE id IN (SELECT id FROM accounts ORDER BY id LIMIT 10)")
    workload.reload()
    workload.run(50)
    _capture_ok(scenario)
    _check_run(scenario, source_sql, f"run 5, after an offsets reset (seed {SEED})")
    state = read_mirror_state(lake_root, SOURCE, "public.accounts")
    assert state["batches_applied"][0] == result["mirror_floor"]


def test_connector_failure_fails_capture_with_reason(cdc_database, source_sql, tmp_path):
    role = "dagfoundry_cdc_norepl"
    source_sql(f"DROP ROLE IF EXISTS {role}")
    source_sql(f"CREATE ROLE {role} LOGIN NOREPLICATION")
    source_sql("CREATE TABLE IF NOT EXISTS public.guarded (id int PRIMARY KEY, v text)")
    source_sql(f"GRANT SELECT ON public.guarded TO {role}")
    source = f"guarded_{uuid.uuid4().hex[:8]}"
    # The publication exists (made by an owner), so the failure is Debezium's: no REPLICATION.
    source_sql(f"CREATE PUBLICATION dagfoundry_{source} FOR TABLE public.guarded")
    try:
        job = {
            "source": source, "dbname": cdc_database, "lake_root": str(tmp_path / "lake"), "user": role,
            "tables": [["public", "guarded", ["id"]]], "limits": {"idle_seconds": 3, "max_seconds": 120},
        }
        code, _, err = run_capture(job, tmp_path)
        assert code == 3, f"a connector failure must fail the capture, got exit {code}: {err[-2000:]}"
        assert "the Debezium connector stopped" in err and "replication" in err.lower(), err[-2000:]
        assert not (tmp_path / "lake" / "landing").exists()
    finally:
        source_sql(f"DROP PUBLICATION IF EXISTS dagfoundry_{source}")
        source_sql(f"DROP OWNED BY {role}")
        source_sql(f"DROP ROLE IF EXISTS {role}")
