"""Real PostgreSQL, Debezium and Spark: values Debezium does not send and schema changes.

- TOAST: under the default replica identity an UPDATE that leaves a large (out-of-line
  TOASTed) value unchanged sends ``__debezium_unavailable_value``; the mirror keeps the
  key's previous value (from the mirror or from an earlier event of the same batches) and
  flags the value as unknown when there is none (an UPDATE of the key); the mirror result
  counts the unknown values. With ``replica_identity_full`` the capture sets ``REPLICA
  IDENTITY FULL`` and nothing is unknown, not even after a key change.
- ``ADD COLUMN ... DEFAULT``: rows untouched since the ALTER get the default in the mirror
  (the capture re-snapshots the table).
- A column widened (int -> bigint) between two batches that are mirrored together (the
  mirror step between them did not run) is mirrored at the wider type.
- A table empty at snapshot time has an empty mirror with its columns.
- An explicit NULL in a column with a DEFAULT lands as NULL (Kafka Connect's JSON converter
  writes a field's default in place of a null unless told not to).
- A mirror step killed (SIGKILL of the Spark driver, then of the task after publishing one
  table of two) between batches from before and after an ALTER (add column with a default,
  drop column, int -> bigint): the next run mirrors everything and mirror = source.
"""

from __future__ import annotations

import json
import random
import string
import uuid

import pytest
from capture_process import run_capture, run_mirror
from mirror_reference import reference_mirror

from dagfoundry.cdc import landing
from dagfoundry.cdc.mirror import read_mirror_state, update_mirrors

pytestmark = pytest.mark.integration

#: slot names are cluster-wide: this module's prefixes (branch and test), unique per run
SLOT_PREFIXES = ("dagfoundry_cdcfix_toast_", "dagfoundry_cdcfix_schema_", "dagfoundry_cdcfix_kill_", "dagfoundry_cdcfix_nulls_",
                 "dagfoundry_cdcfix_full_")
SOURCE = f"cdcfix_toast_{uuid.uuid4().hex[:8]}"
SCHEMA_SOURCE = f"cdcfix_schema_{uuid.uuid4().hex[:8]}"
KILL_SOURCE = f"cdcfix_kill_{uuid.uuid4().hex[:8]}"
NULLS_SOURCE = f"cdcfix_nulls_{uuid.uuid4().hex[:8]}"
FULL_SOURCE = f"cdcfix_full_{uuid.uuid4().hex[:8]}"
SIGNAL_TABLE = "public.dagfoundry_cdc_signal"
TOAST_COLUMNS = ("body", "doc", "blob", "tags")


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
def lake(cdc_database, source_sql, tmp_path_factory):
    _drop_own_slots(source_sql)
    workdir = tmp_path_factory.mktemp("cdc-toast")
    yield {"workdir": workdir, "lake_root": workdir / "lake", "dbname": cdc_database}
    for slot in (f"dagfoundry_{SOURCE}", f"dagfoundry_{SCHEMA_SOURCE}", f"dagfoundry_{KILL_SOURCE}",
                 f"dagfoundry_{NULLS_SOURCE}", f"dagfoundry_{FULL_SOURCE}"):
        source_sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,))
        source_sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,))


def _capture(lake, tables: list[str], source: str = SOURCE, replica_identity_full: bool = False) -> dict:
    job = {"source": source, "dbname": lake["dbname"], "lake_root": str(lake["lake_root"]),
           "signal_table": SIGNAL_TABLE if source in (SCHEMA_SOURCE, KILL_SOURCE, NULLS_SOURCE) else None,
           "tables": [[*t.split("."), ["id"]] for t in tables], "limits": {"idle_seconds": 3, "max_seconds": 120},
           "replica_identity_full": replica_identity_full}
    code, summary, err = run_capture(job, lake["workdir"])
    assert code == 0, f"capture failed ({code}): {err[-3000:]}"
    return summary


def _capture_and_mirror(lake, tables: list[str], source: str = SOURCE, replica_identity_full: bool = False) -> dict:
    summary = _capture(lake, tables, source, replica_identity_full)
    update_mirrors(lake["lake_root"], source, conf={"spark.sql.shuffle.partitions": "2"})
    return summary


def _mirror(lake, table_id: str, source: str = SOURCE) -> dict[int, dict]:
    import pyarrow.parquet as pq

    return {r["id"]: r for r in pq.read_table(lake["lake_root"] / "mirror" / source / table_id).to_pylist()}


def _big_values(rng: random.Random) -> tuple:
    """Return values far beyond TOAST's 2 KB threshold that pglz cannot compress below it."""
    text = "".join(rng.choices(string.ascii_letters + string.digits, k=20_000))
    return (text, json.dumps({"t": text[::-1]}), rng.randbytes(20_000),
            ["".join(rng.choices(string.ascii_letters, k=100)) for _ in range(100)])


def _source_docs(sql) -> dict[int, dict]:
    rows = sql("SELECT id, n, body, doc::text, blob, tags FROM public.docs", fetch=True)
    return {r[0]: {"id": r[0], "n": r[1], "body": r[2], "doc": json.loads(r[3]), "blob": bytes(r[4]), "tags": r[5]} for r in rows}


def _comparable(row: dict) -> dict:
    return {"id": row["id"], "n": row["n"], "body": row["body"], "doc": row["doc"] and json.loads(row["doc"]),
            "blob": row["blob"], "tags": row["tags"] and json.loads(row["tags"])}


def test_unchanged_toasted_values_are_carried_forward(lake, source_sql):
    rng = random.Random(9)
    source_sql("CREATE TABLE public.docs (id int PRIMARY KEY, n int, body text, doc jsonb, blob bytea, tags text[])")
    for key in (1, 2):
        source_sql("INSERT INTO public.docs VALUES (%s, 0, %s, %s, %s, %s)", (key, *_big_values(rng)))
    stored = source_sql("SELECT pg_column_size(body) FROM public.docs WHERE id = 1", fetch=True)[0][0]
    assert stored > 2048, f"body must stay large after compression to be TOASTed out of line ({stored} bytes)"
    _capture_and_mirror(lake, ["public.docs"])

    # Batch 2: updates that leave the TOASTed columns alone (previous value in the mirror),
    # a new row updated in the same batch (previous value earlier in the batch), a row
    # whose body changes and is then left alone, and an UPDATE of the key (unknown).
    source_sql("UPDATE public.docs SET n = n + 1")
    source_sql("INSERT INTO public.docs VALUES (3, 0, %s, %s, %s, %s)", _big_values(rng))
    source_sql("UPDATE public.docs SET n = 5 WHERE id = 3")
    source_sql("UPDATE public.docs SET body = %s WHERE id = 2", (_big_values(rng)[0],))
    source_sql("UPDATE public.docs SET n = 7 WHERE id = 2")
    source_sql("UPDATE public.docs SET id = 10 WHERE id = 1")
    summary = _capture_and_mirror(lake, ["public.docs"])

    manifest = landing.read_manifest(lake["lake_root"], SOURCE, "public.docs", summary["batch_id"])
    assert manifest["unavailable_values"].get("body", 0) >= 3, f"Debezium sent no placeholders: {manifest}"
    source, mirror = _source_docs(source_sql), _mirror(lake, "public.docs")
    assert sorted(mirror) == sorted(source) == [2, 3, 10]
    for key in (2, 3):
        assert _comparable(mirror[key]) == source[key], f"row {key}: a TOASTed value was not carried forward"
        assert mirror[key]["_df_unavailable"] is None
    # The key changed: no earlier event of key 10 holds the values; flagged, not invented.
    assert mirror[10]["n"] == source[10]["n"] and all(mirror[10][c] is None for c in TOAST_COLUMNS)
    assert sorted(json.loads(mirror[10]["_df_unavailable"])) == sorted(TOAST_COLUMNS)
    # Counted in the mirror result (capture_health warns about them, naming table and columns).
    assert read_mirror_state(lake["lake_root"], SOURCE, "public.docs")["unavailable_values"] == dict.fromkeys(TOAST_COLUMNS, 1)
    reference = reference_mirror(lake["lake_root"], SOURCE, "public.docs")
    assert {k[0]: _comparable(v) for k, v in reference.items()} == {k: _comparable(v) for k, v in mirror.items()}

    # Batch 3: an UPDATE that touches nothing TOASTed again carries from the mirror; the
    # unknown row stays flagged until a full row arrives.
    source_sql("UPDATE public.docs SET n = n + 10")
    _capture_and_mirror(lake, ["public.docs"])
    source, mirror = _source_docs(source_sql), _mirror(lake, "public.docs")
    for key in (2, 3):
        assert _comparable(mirror[key]) == source[key]
    assert mirror[10]["n"] == source[10]["n"] and mirror[10]["_df_unavailable"] is not None
    source_sql("UPDATE public.docs SET body = 'short', doc = '{}', blob = '', tags = '{}' WHERE id = 10")
    _capture_and_mirror(lake, ["public.docs"])
    mirror = _mirror(lake, "public.docs")
    assert _comparable(mirror[10]) == _source_docs(source_sql)[10] and mirror[10]["_df_unavailable"] is None
    assert read_mirror_state(lake["lake_root"], SOURCE, "public.docs")["unavailable_values"] == {}


def test_replica_identity_full_sends_unchanged_toasted_values(lake, source_sql):
    """``capture.replica_identity_full``: the capture sets FULL, so nothing is unknown, even after a key change."""
    rng = random.Random(11)
    source_sql("CREATE TABLE public.full_docs (id int PRIMARY KEY, n int, body text, doc jsonb, blob bytea, tags text[])")
    for key in (1, 2):
        source_sql("INSERT INTO public.full_docs VALUES (%s, 0, %s, %s, %s, %s)", (key, *_big_values(rng)))
    assert source_sql("SELECT relreplident FROM pg_class WHERE oid = 'public.full_docs'::regclass", fetch=True) == [("d",)]
    _capture_and_mirror(lake, ["public.full_docs"], FULL_SOURCE, replica_identity_full=True)
    assert source_sql("SELECT relreplident FROM pg_class WHERE oid = 'public.full_docs'::regclass", fetch=True) == [("f",)]

    source_sql("UPDATE public.full_docs SET n = n + 1")  # the TOASTed columns are left alone
    source_sql("UPDATE public.full_docs SET id = 10 WHERE id = 1")  # a key change: no history under key 10
    summary = _capture_and_mirror(lake, ["public.full_docs"], FULL_SOURCE, replica_identity_full=True)
    manifest = landing.read_manifest(lake["lake_root"], FULL_SOURCE, "public.full_docs", summary["batch_id"])
    assert not manifest.get("unavailable_values"), f"Debezium left values out under REPLICA IDENTITY FULL: {manifest}"
    rows = source_sql("SELECT id, n, body, doc::text, blob, tags FROM public.full_docs", fetch=True)
    source = {r[0]: {"id": r[0], "n": r[1], "body": r[2], "doc": json.loads(r[3]), "blob": bytes(r[4]), "tags": r[5]} for r in rows}
    mirror = _mirror(lake, "public.full_docs", FULL_SOURCE)
    assert sorted(mirror) == sorted(source) == [2, 10]
    for key, row in mirror.items():
        assert _comparable(row) == source[key], f"row {key}: a TOASTed value was lost under REPLICA IDENTITY FULL"
        assert row["_df_unavailable"] is None
    assert read_mirror_state(lake["lake_root"], FULL_SOURCE, "public.full_docs")["unavailable_values"] == {}


def _evolving(sql, table_id: str = "public.evolving") -> dict[int, dict]:
    rows = sql(f"SELECT * FROM {table_id}", fetch=True)
    names = [r[0] for r in sql("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table_id,), fetch=True)]
    return {r[0]: dict(zip(names, r)) for r in rows}


def _mirror_equals_source(lake, sql, table_id: str = "public.evolving", source_name: str = SCHEMA_SOURCE) -> tuple[bool, str]:
    source = _evolving(sql, table_id)
    mirror = {k: {c: v for c, v in r.items() if not c.startswith("_df_")} for k, r in _mirror(lake, table_id, source_name).items()}
    wrong = [(k, source[k], mirror.get(k)) for k in sorted(source) if mirror.get(k) != source[k]][:3]
    return not wrong and sorted(mirror) == sorted(source), f"{len(mirror)} mirror rows, {len(source)} source rows, e.g. {wrong}"


def test_schema_changes_reach_the_mirror(lake, source_sql):
    import pyarrow.parquet as pq

    tables = ["public.evolving", "public.empty_at_start"]
    source_sql("CREATE TABLE public.evolving (id int PRIMARY KEY, v int)")
    source_sql("CREATE TABLE public.empty_at_start (id int PRIMARY KEY, x text, at timestamptz)")
    source_sql("INSERT INTO public.evolving SELECT g, g FROM generate_series(1, 300) g")
    _capture_and_mirror(lake, tables, SCHEMA_SOURCE)

    # An empty table has a mirror with its columns, and later rows are applied on top of it.
    empty = pq.read_table(lake["lake_root"] / "mirror" / SCHEMA_SOURCE / "public.empty_at_start")
    assert empty.num_rows == 0 and empty.column_names[:3] == ["id", "x", "at"]

    # ADD COLUMN with defaults (constant, NOT NULL, volatile) and without: untouched rows
    # must read as the source does.
    source_sql("ALTER TABLE public.evolving ADD COLUMN flag boolean NOT NULL DEFAULT true, "
               "ADD COLUMN note text DEFAULT 'fresh', ADD COLUMN plain int, ADD COLUMN made timestamptz DEFAULT clock_timestamp()")
    source_sql("UPDATE public.evolving SET v = -v, plain = 1 WHERE id <= 5")
    source_sql("INSERT INTO public.empty_at_start VALUES (1, 'first', now())")
    summary = _capture_and_mirror(lake, tables, SCHEMA_SOURCE)
    assert "public.evolving" in summary["snapshot_requested"], summary
    for _ in range(2):  # the incremental snapshot may span runs
        equal, detail = _mirror_equals_source(lake, source_sql)
        if equal:
            break
        _capture_and_mirror(lake, tables, SCHEMA_SOURCE)
    equal, detail = _mirror_equals_source(lake, source_sql)
    assert equal, f"after ADD COLUMN ... DEFAULT: {detail}"
    assert list(_mirror(lake, "public.empty_at_start", SCHEMA_SOURCE)) == [1]

    # Widening between two batches that are mirrored together (the mirror step in between
    # was killed): batches with int and with bigint values, and a mirror with int.
    source_sql("UPDATE public.evolving SET v = v + 1 WHERE id BETWEEN 10 AND 20")
    assert _capture(lake, tables, SCHEMA_SOURCE)["batch_id"] is not None
    source_sql("ALTER TABLE public.evolving ALTER COLUMN v TYPE bigint")
    source_sql("UPDATE public.evolving SET v = v + 5000000000 WHERE id BETWEEN 15 AND 30")
    widened = _capture(lake, tables, SCHEMA_SOURCE)
    assert widened["rows_per_table"].get("public.evolving") == 16
    assert widened["snapshot_requested"] == []
    update_mirrors(lake["lake_root"], SCHEMA_SOURCE, conf={"spark.sql.shuffle.partitions": "2"})
    equal, detail = _mirror_equals_source(lake, source_sql)
    assert equal, f"after int -> bigint across batches mirrored together: {detail}"
    mirror_schema = pq.read_schema(next((lake["lake_root"] / "mirror" / SCHEMA_SOURCE / "public.evolving").glob("*.parquet")))
    assert str(mirror_schema.field("v").type) == "int64"


def test_mirror_killed_between_batches_before_and_after_an_alter(lake, source_sql):
    import pyarrow.parquet as pq

    tables = ["public.morphing", "public.steady"]
    lake_root = lake["lake_root"]
    source_sql("CREATE TABLE public.morphing (id int PRIMARY KEY, v int, gone text, n numeric(10,2))")
    source_sql("CREATE TABLE public.steady (id int PRIMARY KEY, s text)")
    source_sql("INSERT INTO public.morphing SELECT g, g, 'old ' || g, g / 4.0 FROM generate_series(1, 200) g")
    source_sql("INSERT INTO public.steady SELECT g, 's' || g FROM generate_series(1, 50) g")
    _capture(lake, tables, KILL_SOURCE)
    assert run_mirror(lake_root, KILL_SOURCE)[0] == 0
    mirrored = {t: read_mirror_state(lake_root, KILL_SOURCE, t) for t in tables}

    # A batch from before the ALTER, then one from after it (with the re-snapshot the
    # added default asks for); neither is mirrored yet.
    source_sql("UPDATE public.morphing SET v = -v, gone = 'changed' WHERE id <= 20")
    source_sql("DELETE FROM public.morphing WHERE id BETWEEN 21 AND 25")
    source_sql("INSERT INTO public.morphing SELECT g, g, 'new ' || g, 0.5 FROM generate_series(201, 210) g")
    source_sql("UPDATE public.steady SET s = s || '+' WHERE id <= 10")
    before = _capture(lake, tables, KILL_SOURCE)
    source_sql("ALTER TABLE public.morphing ADD COLUMN tag text NOT NULL DEFAULT 'new', DROP COLUMN gone, "
               "ALTER COLUMN v TYPE bigint")
    source_sql("UPDATE public.morphing SET v = v + 5000000000, tag = 'set' WHERE id BETWEEN 15 AND 40")
    source_sql("INSERT INTO public.morphing SELECT g, g * 10000000000, 1.25, 'ins' FROM generate_series(211, 220) g")
    source_sql("UPDATE public.morphing SET id = 1000 WHERE id = 50")
    source_sql("DELETE FROM public.morphing WHERE id BETWEEN 30 AND 32")
    source_sql("DELETE FROM public.steady WHERE id > 45")
    after = _capture(lake, tables, KILL_SOURCE)
    assert after["batch_id"] == before["batch_id"] + 1
    assert "public.morphing" in after["snapshot_requested"], after

    # Kill 1: the Spark driver dies once it has staged the first table; nothing is published.
    code, err = run_mirror(lake_root, KILL_SOURCE, failpoint="after_stage@public.morphing")
    assert code != 0, "the armed Spark fail point did not fire"
    assert {t: read_mirror_state(lake_root, KILL_SOURCE, t) for t in tables} == mirrored, err[-2000:]
    # Kill 2: the task dies after publishing the first table and before the second.
    code, err = run_mirror(lake_root, KILL_SOURCE, failpoint="after_publish@public.morphing")
    assert code == -9, f"the publish fail point did not fire ({code}): {err[-2000:]}"
    assert read_mirror_state(lake_root, KILL_SOURCE, "public.morphing")["last_batch_id"] == after["batch_id"]
    assert read_mirror_state(lake_root, KILL_SOURCE, "public.steady") == mirrored["public.steady"]

    # The next run mirrors the rest; the re-snapshot may take one more capture to complete.
    code, err = run_mirror(lake_root, KILL_SOURCE)
    assert code == 0, err[-3000:]
    assert read_mirror_state(lake_root, KILL_SOURCE, "public.steady")["last_batch_id"] == after["batch_id"]
    for _ in range(2):
        if all(_mirror_equals_source(lake, source_sql, t, KILL_SOURCE)[0] for t in tables):
            break
        _capture(lake, tables, KILL_SOURCE)
        assert run_mirror(lake_root, KILL_SOURCE)[0] == 0
    for table_id in tables:
        equal, detail = _mirror_equals_source(lake, source_sql, table_id, KILL_SOURCE)
        assert equal, f"{table_id} after killed mirror steps across an ALTER: {detail}"
    schema = pq.read_schema(next((lake_root / "mirror" / KILL_SOURCE / "public.morphing").glob("*.parquet")))
    assert str(schema.field("v").type) == "int64" and "gone" not in schema.names and "tag" in schema.names
    reference = reference_mirror(lake_root, KILL_SOURCE, "public.morphing")
    assert len(reference) == len(_evolving(source_sql, "public.morphing"))


def test_explicit_null_in_a_column_with_a_default_stays_null(lake, source_sql):
    source_sql("CREATE TABLE public.defaults (id int PRIMARY KEY, flag boolean DEFAULT true, note text DEFAULT 'x', "
               "n int NOT NULL DEFAULT 5)")
    source_sql("INSERT INTO public.defaults VALUES (1, NULL, NULL, 1), (2, DEFAULT, DEFAULT, DEFAULT)")
    _capture(lake, ["public.defaults"], NULLS_SOURCE)  # the snapshot
    source_sql("INSERT INTO public.defaults VALUES (3, NULL, NULL, 3), (4, DEFAULT, DEFAULT, DEFAULT)")
    source_sql("UPDATE public.defaults SET flag = NULL, note = NULL WHERE id = 2")
    _capture(lake, ["public.defaults"], NULLS_SOURCE)  # streaming
    reference = {k[0]: (r["flag"], r["note"], r["n"]) for k, r in reference_mirror(lake["lake_root"], NULLS_SOURCE, "public.defaults").items()}
    assert reference == {1: (None, None, 1), 2: (None, None, 5), 3: (None, None, 3), 4: (True, "x", 5)}
