"""Connector property generation and capture validation."""

from __future__ import annotations

import pytest

from dagfoundry.cdc.connector_config import (
    CaptureConfig,
    CaptureConfigError,
    CapturedTable,
    SourceConnection,
    debezium_properties,
    redacted,
)

CONFIG = CaptureConfig(source="shop", conn_id="pg_shop", tables=(CapturedTable("public", "orders", ("id",)), CapturedTable("sales", "lines")))
CONN = SourceConnection("db.example", 5433, "shopdb", "cdc_user", "s3cret")


def test_embedded_properties_pin_what_the_landing_relies_on(tmp_path):
    props = debezium_properties(CONFIG, CONN, mode="embedded", offsets_file=tmp_path / "offsets.dat")
    assert props["plugin.name"] == "pgoutput"
    # the capture manages the publication (only tables with a replica identity join it)
    assert props["publication.autocreate.mode"] == "disabled"
    assert props["table.include.list"] == r"public\.orders,sales\.lines"
    assert props["slot.name"] == "dagfoundry_shop" and props["publication.name"] == "dagfoundry_shop"
    assert props["decimal.handling.mode"] == "string" and props["time.precision.mode"] == "adaptive_time_microseconds"
    assert props["signal.data.collection"] == "public.dagfoundry_cdc_signal"
    assert props["message.key.columns"] == r"public\.orders:id"  # declared keys only
    assert props["offset.storage.file.filename"] == str(tmp_path / "offsets.dat")
    assert props["offset.flush.interval.ms"] == "0" and props["name"] == "dagfoundry-shop"
    assert props["database.password"] == "s3cret"
    # an explicit NULL in a column with a DEFAULT must not become the default
    assert props["converter.replace.null.with.default"] == "false"


def test_connect_properties_share_the_generator_without_engine_settings():
    props = debezium_properties(CONFIG, CONN, mode="connect")
    assert props["connector.class"].endswith("PostgresConnector") and props["tasks.max"] == "1"
    assert "offset.storage" not in props and props["topic.prefix"] == "shop"
    assert props["publication.autocreate.mode"] == "disabled"  # the deploy manages the publication
    assert props["value.converter.replace.null.with.default"] == "false"


def test_secrets_never_show():
    assert "s3cret" not in repr(CONN)
    assert "s3cret" not in str(redacted(debezium_properties(CONFIG, CONN, mode="connect")))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (CaptureConfig(source="shop-1", conn_id="c", tables=CONFIG.tables), "use letters"),
        (CaptureConfig(source="shop", conn_id="c", tables=()), "no tables"),
        (CaptureConfig(source="shop", conn_id="c", tables=(CapturedTable("public", "a;drop"),)), "not a plain SQL identifier"),
        (CaptureConfig(source="shop", conn_id="c", tables=CONFIG.tables, snapshot_mode="sometimes"), "snapshot_mode"),
        (CaptureConfig(source="shop", conn_id="c", tables=CONFIG.tables, slot_name="Bad-Slot"), "slot name"),
        (CaptureConfig(source="shop", conn_id="c", tables=CONFIG.tables * 2), "listed twice"),
    ],
)
def test_invalid_capture_names_the_problem(config, message):
    with pytest.raises(CaptureConfigError, match=message):
        config.validate()


def test_embedded_mode_needs_an_offsets_file():
    with pytest.raises(CaptureConfigError, match="offsets file"):
        debezium_properties(CONFIG, CONN, mode="embedded")
