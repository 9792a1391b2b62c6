"""Capture operations on real PostgreSQL and Debezium, with a small ``chunk_events`` and
``max_events`` so tables are several times larger than one batch:

- an initial snapshot larger than ``max_events`` completes in one run, landed in chunks;
  streaming larger than ``max_events`` takes several bounded runs; mirror = source;
- a table without a replica identity stays out of the publication (the application's own
  UPDATE keeps working), is reported with its fix, refuses a re-snapshot, and is snapshotted
  once it has ``REPLICA IDENTITY FULL``;
- a table added to the capture later gets a snapshot of its existing rows;
- TRUNCATE empties that table's mirror, the other tables go on; a re-snapshot of it works;
- a table whose batch fails its quality checks (a special value in its key) is not mirrored,
  the other table is, and the run fails at its end naming the table;
- each run reports the slot's retained WAL; decommissioning drops slot and publication.
"""

from __future__ import annotations

import json
import uuid

import pytest
from capture_process import run_capture
from mirror_reference import reference_mirror

from dagfoundry.cdc import landing
from dagfoundry.cdc.connector_config import CaptureConfig, CapturedTable, SourceConnection
from dagfoundry.cdc.mirror import update_mirrors
from dagfoundry.cdc.signals import SignalError
from dagfoundry.cdc.tasks import (
    CaptureHealthError,
    check_quality,
    decommission_capture,
    report_capture_health,
    request_resnapshot,
)

pytestmark = pytest.mark.integration

SOURCE = f"ops_{uuid.uuid4().hex[:8]}"
SIGNAL_TABLE = "public.dagfoundry_cdc_signal"
BIG_ROWS, CHUNK = 2300, 400
#: Debezium hands over at most this many events at once (4096 by default): a landed batch
#: may exceed ``chunk_events`` by one engine batch, so it is kept below CHUNK here.
ENGINE_BATCH = 128
KEYS = {"public.big": ("id",), "public.nokey": ("id",), "public.truncme": ("id",), "public.late": ("id",)}


@pytest.fixture(scope="module")
def ops(cdc_database, source_sql, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cdc-ops")
    source_sql(
        "CREATE TABLE public.big (id int PRIMARY KEY, v text, n int);"
        "CREATE TABLE public.nokey (id int NOT NULL, v text);"
        "CREATE TABLE public.truncme (id int PRIMARY KEY, v text);"
        "CREATE TABLE public.late (id int PRIMARY KEY, v text);"
        f"INSERT INTO big SELECT g, 'row ' || g, 0 FROM generate_series(1, {BIG_ROWS}) g;"
        "INSERT INTO nokey SELECT g, 'k ' || g FROM generate_series(1, 120) g;"
        "INSERT INTO truncme SELECT g, 't ' || g FROM generate_series(1, 50) g;"
        "INSERT INTO late SELECT g, 'l ' || g FROM generate_series(1, 700) g;"
    )
    return {"workdir": workdir, "lake_root": workdir / "lake", "dbname": cdc_database,
            "connection": SourceConnection("127.0.0.1", 5432, cdc_database, "postgres")}


def _job(ops, tables) -> dict:
    return {
        "source": SOURCE, "dbname": ops["dbname"], "lake_root": str(ops["lake_root"]), "signal_table": SIGNAL_TABLE,
        "tables": [[*t.split("."), list(KEYS[t])] for t in tables],
        "limits": {"idle_seconds": 3, "max_seconds": 180, "max_events": CHUNK, "chunk_events": CHUNK},
        "extra_properties": {"max.batch.size": str(ENGINE_BATCH)},
    }


def _config(tables) -> CaptureConfig:
    return CaptureConfig(source=SOURCE, conn_id="unused", signal_table=SIGNAL_TABLE,
                         tables=tuple(CapturedTable(*t.split("."), KEYS[t]) for t in tables))


def _capture(ops, tables) -> dict:
    code, summary, err = run_capture(_job(ops, tables), ops["workdir"])
    assert code == 0, f"capture failed ({code}): {err[-3000:]}"
    assert summary is not None
    return summary


def _capture_until_idle(ops, tables, runs: int = 8) -> list[dict]:
    summaries = []
    for _ in range(runs):
        summaries.append(_capture(ops, tables))
        if summaries[-1]["stopped_because"] == "idle":
            return summaries
    raise AssertionError(f"not caught up after {runs} runs: {summaries}")


def _source_rows(sql, table_id: str) -> dict[tuple, dict]:
    return {(r[0],): {"id": r[0], "v": r[1], **({"n": r[2]} if len(r) > 2 else {})}
            for r in sql(f"SELECT * FROM {table_id}", fetch=True)}


def _mirror_rows(lake_root, table_id: str) -> dict[tuple, dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(lake_root / "mirror" / SOURCE / table_id).to_pylist()
    return {(r["id"],): {k: v for k, v in r.items() if not k.startswith("_df_")} for r in rows}


def _assert_mirrors_equal_source(ops, sql, tables, label: str):
    update_mirrors(ops["lake_root"], SOURCE, conf={"spark.sql.shuffle.partitions": "2"})
    for table_id in tables:
        expected = _source_rows(sql, table_id)
        reference = reference_mirror(ops["lake_root"], SOURCE, table_id)
        assert reference == expected, f"{label}: reference over landed batches differs from PostgreSQL for {table_id}"
        mirrored = _mirror_rows(ops["lake_root"], table_id)
        missing, extra = set(expected) - set(mirrored), set(mirrored) - set(expected)
        assert mirrored == expected, f"{label}: mirror of {table_id}: {len(missing)} missing, {len(extra)} extra keys"


def _publication_tables(sql) -> set[str]:
    rows = sql("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
               (f"dagfoundry_{SOURCE}",), fetch=True)
    return {r[0] for r in rows}


def test_capture_operations_keep_every_mirror_equal_to_source(ops, source_sql):
    first_tables = ["public.big", "public.nokey", "public.truncme"]

    # Run 1: an initial snapshot several times larger than max_events completes in one run,
    # landed in chunks; the PK-less table is skipped and stays out of the publication.
    first = _capture(ops, first_tables)
    assert first["rows_per_table"]["public.big"] == BIG_ROWS
    assert len(first["batch_ids"]) >= BIG_ROWS // CHUNK, f"expected chunked landing: {first['batch_ids']}"
    for batch_id in landing.list_batches(ops["lake_root"], SOURCE, "public.big"):
        rows = landing.read_manifest(ops["lake_root"], SOURCE, "public.big", batch_id)["row_count"]
        assert rows < CHUNK + ENGINE_BATCH, f"batch {batch_id} holds {rows} events: memory is not bounded by chunk_events"
    assert set(first["skipped_tables"]) == {"public.nokey"}
    assert "REPLICA IDENTITY FULL" in first["skipped_tables"]["public.nokey"]
    assert _publication_tables(source_sql) == {"public.big", "public.truncme", SIGNAL_TABLE}
    source_sql("UPDATE nokey SET v = v || '!' WHERE id <= 5")  # the application is not broken
    assert first["slot"]["exists"] and first["slot"]["retained_wal_bytes"] >= 0
    with pytest.raises(CaptureHealthError, match="public.nokey"):
        report_capture_health(first)
    with pytest.raises(SignalError, match="REPLICA IDENTITY FULL"):
        request_resnapshot(_config(first_tables), ["public.nokey"], connection=ops["connection"])
    _assert_mirrors_equal_source(ops, source_sql, ["public.big", "public.truncme"], "after the initial snapshot")

    # Streaming several times max_events, a TRUNCATE followed by new rows, the PK-less
    # table made capturable, and a table added to the capture: bounded runs until idle.
    source_sql("UPDATE big SET n = n + 1, v = v || '+' WHERE id <= 1200")
    source_sql("DELETE FROM big WHERE id % 97 = 0")
    source_sql("TRUNCATE truncme")
    source_sql("INSERT INTO truncme VALUES (1001, 'after'), (1002, 'truncate')")
    source_sql("ALTER TABLE nokey REPLICA IDENTITY FULL")
    all_tables = [*first_tables, "public.late"]
    runs = _capture_until_idle(ops, all_tables)
    assert runs[0]["stopped_because"] == "max_events" and len(runs) >= 3, [r["stopped_because"] for r in runs]
    assert set(runs[0]["snapshot_requested"]) == {"public.nokey", "public.late"}
    assert all(not r["skipped_tables"] for r in runs)
    assert _publication_tables(source_sql) == {*all_tables, SIGNAL_TABLE}
    report_capture_health(runs[-1])
    _assert_mirrors_equal_source(ops, source_sql, all_tables, "after streaming, TRUNCATE and new tables")
    assert set(_mirror_rows(ops["lake_root"], "public.truncme")) == {(1001,), (1002,)}

    # A re-snapshot of the truncated table works: its rows arrive again as reads.
    request_resnapshot(_config(all_tables), ["public.truncme"], connection=ops["connection"])
    resnapshot = _capture_until_idle(ops, all_tables)
    assert sum(r["rows_per_table"].get("public.truncme", 0) for r in resnapshot) >= 2, resnapshot
    _assert_mirrors_equal_source(ops, source_sql, all_tables, "after a re-snapshot of the truncated table")
    assert set(_mirror_rows(ops["lake_root"], "public.truncme")) == {(1001,), (1002,)}

    # Decommissioning drops the slot and the publication.
    result = decommission_capture(_config(all_tables), str(ops["lake_root"]), connection=ops["connection"])
    assert result["slot_dropped"] and result["publication_dropped"]
    assert result["kept_offsets"], "the position is forgotten: a later capture starts with a new snapshot"
    assert not source_sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (f"dagfoundry_{SOURCE}",), fetch=True)
    assert not _publication_tables(source_sql)


def test_capture_refuses_to_run_when_its_slot_was_dropped_behind_its_back(ops, source_sql):
    source = f"lost_{uuid.uuid4().hex[:8]}"
    job = {**_job(ops, ["public.late"]), "source": source}
    code, _, err = run_capture(job, ops["workdir"])
    assert code == 0, err[-2000:]
    source_sql("SELECT pg_drop_replication_slot(%s)", (f"dagfoundry_{source}",))
    code, _, err = run_capture(job, ops["workdir"])
    assert code == 3 and "is gone but offsets are stored" in err and "reset_offsets" in err, err[-2000:]
    source_sql(f"DROP PUBLICATION IF EXISTS dagfoundry_{source}")


def test_capture_dying_inside_the_initial_snapshot_loses_nothing(ops, source_sql):
    import pyarrow.parquet as pq

    source = f"crashed_{uuid.uuid4().hex[:8]}"
    source_sql("CREATE TABLE public.crashy AS SELECT g AS id, 'c ' || g AS v FROM generate_series(1, 900) g")
    source_sql("ALTER TABLE public.crashy ADD PRIMARY KEY (id)")
    KEYS["public.crashy"] = ("id",)
    job = {**_job(ops, ["public.crashy"]), "source": source}
    code, _, err = run_capture({**job, "fault": "after_landing"}, ops["workdir"])
    assert code == 17, f"the capture should die after its first chunk: {code} {err[-2000:]}"
    crashed = landing.list_batches(ops["lake_root"], source, "public.crashy")
    assert crashed, "the first chunk of the snapshot was landed before the crash"
    source_sql("DELETE FROM crashy WHERE id <= 100")  # rows the crashed chunk holds
    code, summary, err = run_capture(job, ops["workdir"])
    assert code == 0 and summary["rows_per_table"]["public.crashy"] == 800, err[-2000:]
    update_mirrors(ops["lake_root"], source, conf={"spark.sql.shuffle.partitions": "2"})
    mirrored = sorted(r["id"] for r in pq.read_table(ops["lake_root"] / "mirror" / source / "public.crashy").to_pylist())
    assert mirrored == list(range(101, 901)), "rows of the crashed snapshot must not survive in the mirror"
    source_sql("SELECT pg_drop_replication_slot(%s)", (f"dagfoundry_{source}",))
    source_sql(f"DROP PUBLICATION IF EXISTS dagfoundry_{source}")


def test_cli_lists_orphaned_slots_and_drops_only_those(cdc_database, source_sql, monkeypatch, capsys):
    from dagfoundry.cli import main

    orphan = f"dagfoundry_gone_{uuid.uuid4().hex[:8]}"
    source_sql("CREATE TABLE IF NOT EXISTS public.gone (id int PRIMARY KEY)")
    source_sql(f"CREATE PUBLICATION {orphan} FOR TABLE public.gone")
    source_sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (orphan,))
    monkeypatch.setenv("AIRFLOW_CONN_CDC_OPS_SOURCE", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": cdc_database}))
    args = ["--conn-id", "cdc_ops_source"]

    assert main(["cdc-slots", *args]) == 0
    listing = [line for line in capsys.readouterr().out.splitlines() if line.startswith(orphan)]
    assert listing and "ORPHAN" in listing[0] and "MiB" in listing[0]

    # A slot that a spec in dag_configs/ owns is refused (the demo's shop_cdc).
    assert main(["cdc-drop-slot", *args, "--slot", "dagfoundry_shop_cdc"]) == 1
    assert "belongs to the spec 'shop_cdc'" in capsys.readouterr().err

    assert main(["cdc-drop-slot", *args, "--slot", orphan]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "slot": orphan, "slot_dropped": True, "publication": orphan, "publication_dropped": True}
    assert not source_sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (orphan,), fetch=True)


def test_a_table_failing_its_quality_checks_does_not_stop_the_others(ops, source_sql):
    import pyarrow.parquet as pq

    from dagfoundry.cdc.mirror import read_mirror_state

    source = f"badkey_{uuid.uuid4().hex[:8]}"
    # 'infinity' has no lake date: it lands as a null key, which fails the quality check.
    source_sql("CREATE TABLE public.datekey (d date PRIMARY KEY, v text);"
               "INSERT INTO datekey VALUES ('2020-01-01', 'a'), ('infinity', 'inf');"
               "CREATE TABLE public.fine (id int PRIMARY KEY, v text);"
               "INSERT INTO fine SELECT g, 'f ' || g FROM generate_series(1, 30) g")
    KEYS["public.datekey"], KEYS["public.fine"] = ("d",), ("id",)
    job = {**_job(ops, ["public.datekey", "public.fine"]), "source": source}
    try:
        for run in range(2):
            code, summary, err = run_capture(job, ops["workdir"])
            assert code == 0, f"run {run}: one bad value must not stop the capture: {err[-2000:]}"
            quality = check_quality(str(ops["lake_root"]), source, summary)
            assert set(quality["failed_tables"]) == {"public.datekey"}, quality
            assert "null key column 'd'" in quality["failed_tables"]["public.datekey"]
            mirrored = update_mirrors(ops["lake_root"], source, conf={"spark.sql.shuffle.partitions": "2"})
            assert set(mirrored["failed_tables"]) == {"public.datekey"}
            rows = pq.read_table(ops["lake_root"] / "mirror" / source / "public.fine").to_pylist()
            expected = dict(source_sql("SELECT id, v FROM fine", fetch=True))
            assert {r["id"]: r["v"] for r in rows} == expected, f"run {run}: the good table is not mirrored equal to the source"
            assert read_mirror_state(ops["lake_root"], source, "public.datekey") is None, "a failing batch was mirrored"
            with pytest.raises(CaptureHealthError, match=r"public.datekey is not mirrored: .*null key column 'd'"):
                report_capture_health(summary, quality, mirrored)
            source_sql("INSERT INTO fine VALUES (100 + %s, 'next run')", (run,))  # the good table goes on
    finally:
        source_sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                   (f"dagfoundry_{source}",))
        source_sql(f"DROP PUBLICATION IF EXISTS dagfoundry_{source}")
