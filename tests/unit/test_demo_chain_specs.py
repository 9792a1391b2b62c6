"""The spec copies ``make demo`` and the end-to-end test run: Asset schedules, the demo's sizes, valid specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.demo.lifecycle import EXAMPLES, _progress, write_chain_specs
from include.demo.run_demo import DEMO_SIZE, LABEL_HORIZON_DAYS

ROOT = Path(__file__).resolve().parents[2]


def _load(folder: Path) -> dict:
    from dagfoundry.specs.loading import SpecLoader, find_spec_files

    result = SpecLoader(folder).load_all(find_spec_files(folder))
    assert not result.errors, result.errors
    return {loaded.spec.name: loaded.spec for loaded in result.specs}


def test_chain_copies_run_on_assets_only_with_the_demo_sizes(tmp_path: Path) -> None:
    write_chain_specs(ROOT / "dag_configs", tmp_path, slot_name="df_chain_test", overrides=DEMO_SIZE.spec_overrides())
    assert (tmp_path / "cdc" / "defaults.yaml").read_text() == (ROOT / "dag_configs" / "cdc" / "defaults.yaml").read_text()
    specs = _load(tmp_path)
    cdc = specs["shop_cdc"]
    assert cdc.schedule is None and cdc.mode == "embedded"
    assert (cdc.capture.idle.total_seconds(), cdc.capture.max_duration.total_seconds()) == (2, 180)
    assert cdc.capture.max_events == 200000, "keys the overrides leave alone come from the defaults file"
    assert cdc.capture.slot_name == cdc.capture.publication_name == "df_chain_test"
    assert specs["orders_events_compaction"].spark.max_partitions_per_batch == DEMO_SIZE.days
    assert specs["shop_churn_retraining"].split.holdout_days == LABEL_HORIZON_DAYS + DEMO_SIZE.holdout_label_days
    chain = {name: spec.schedule for name, spec in specs.items()}
    assert chain == {
        "shop_cdc": None,
        "orders_events_compaction": ("lake.mirror.shop.public.orders",),
        "customer_order_features": ("lake.compaction.events.orders",),
        "shop_churn_retraining": ("features.customer_order_features",),
        "shop_churn_promotion": ("models.shop_churn.challenger",),
    }, "no cron left: only the upstream's Asset starts a run"
    assert len(specs) == len(EXAMPLES)


def test_overrides_for_a_spec_the_chain_does_not_run_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"overrides for specs the chain does not run: \['cdc/shpo.yaml'\]"):
        write_chain_specs(ROOT / "dag_configs", tmp_path, overrides={"cdc/shpo.yaml": {}})


def test_progress_names_what_runs_and_counts_what_is_done() -> None:
    states = {"plan": "success", "skip_me": "skipped", "rewrite[0]": "running", "rewrite[1]": "queued",
              "report": None, "cleanup": None}
    assert _progress(states) == "done 2/6; running: rewrite[0]; queued: rewrite[1]; waiting 2"
