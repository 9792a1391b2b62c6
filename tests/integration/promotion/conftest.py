"""A lake folder with MLflow's local default store and one promotion spec per scenario, each
on its own registered model so the scenarios do not see each other's aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
from promotion_zoo import spec_text

SEGMENTS = "segments:\n  - {column: region, metric: roc_auc, max_regression: 0.02, min_rows: 50}\n"
#: file name -> spec text
SPECS = {
    "first": spec_text("promo_first", "m_first"),
    "first_floor": spec_text("promo_first_floor", "m_first_floor").replace("floor: 0.55", "floor: 0.99"),
    "better": spec_text("promo_better", "m_better"),
    "worse": spec_text("promo_worse", "m_worse"),
    "floor": spec_text("promo_floor", "m_floor").replace("floor: 0.55", "floor: 0.99"),
    "segment": spec_text("promo_segment", "m_segment", SEGMENTS),
    "budget": spec_text("promo_budget", "m_budget", "budgets: {max_latency_ms_per_1000_rows: 0.000001}\n"),
    "size": spec_text("promo_size", "m_size", "budgets: {max_model_bytes: 100}\n"),
    "digest": spec_text("promo_digest", "m_digest"),
    "announced": spec_text("promo_announced", "m_announced"),
    "dry": spec_text("promo_dry", "m_dry"),
    "rollback": spec_text("promo_rollback", "m_rollback"),
    "approve": spec_text("promo_approve", "m_approve", approval="required"),
    "reject": spec_text("promo_reject", "m_reject", approval="required"),
    "timeout": spec_text("promo_timeout", "m_timeout", approval="required"),
    "race": spec_text("promo_race", "m_race", approval="required"),
}


@pytest.fixture(scope="session")
def promotion_lake(tmp_path_factory) -> Path:
    """Write the specs; point dagfoundry's loader and MLflow's local default at a temporary lake."""
    base = tmp_path_factory.mktemp("promotion")
    lake, configs = base / "lake", base / "configs"
    lake.mkdir()
    configs.mkdir()
    for name, text in SPECS.items():
        (configs / f"{name}.yaml").write_text(text)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield lake
    monkeypatch.undo()


@pytest.fixture(scope="session")
def registry(promotion_lake):
    """Return an MLflow client of the temporary lake's store."""
    import mlflow

    from dagfoundry.models.tracking import configure, local_default

    configure(local_default(promotion_lake))
    return mlflow.MlflowClient()


@pytest.fixture(scope="session")
def load_spec(promotion_lake):
    """Return a function loading one scenario's spec model."""
    from dagfoundry.specs.loading import SpecLoader

    configs = Path(promotion_lake).parent / "configs"

    def load(name: str):
        return SpecLoader(configs, environ={}).load_file(configs / f"{name}.yaml").spec

    return load
