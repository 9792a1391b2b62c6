"""One trained-on lake for the retraining tests: demo order events with a churn signal, real
Spark features (``customer_order_features``), churn labels, the example spec and variants."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from churn_lake import EVENT_DAYS, FAILING_VARIANTS, FIRST_EVENT_DAY, ROOT, variant


@pytest.fixture(scope="session")
def churn_lake(tmp_path_factory):
    """Write the lake and the spec folder once; point Airflow's loader and dagfoundry at them."""
    from dagfoundry.features.compute import compute_feature_range
    from dagfoundry.specs.loading import SpecLoader
    from include.demo.churn_labels import write_churn_labels
    from include.demo.order_events import write_order_events

    base = tmp_path_factory.mktemp("retraining")
    lake, configs = base / "lake", base / "configs"
    configs.mkdir()
    write_order_events(lake, FIRST_EVENT_DAY, EVENT_DAYS, events_per_day=300, files_per_day=1, customers=300,
                       churn_signal=True)
    features = SpecLoader(ROOT / "dag_configs", environ={}).load_file(
        ROOT / "dag_configs" / "features" / "customer_order_features.yaml"
    )
    compute_feature_range(features.spec.definition(str(lake)), lake, "2025-01-25", "2025-05-31")  # type: ignore[attr-defined]
    write_churn_labels(lake, dt.date(2025, 2, 1), dt.date(2025, 5, 17))

    (configs / "shop_churn.yaml").write_text(variant("shop_churn_retraining", "shop_churn", {}))
    (configs / "churn_gx_fail.yaml").write_text(
        variant("churn_gx_fail", "churn_gx_fail", {
            "{column: orders_7d, min_value: 0, mostly: 0.99}": "{column: orders_7d, min_value: 0, max_value: 2}"
        })
    )
    (configs / "churn_on_drift.yaml").write_text(
        variant("churn_on_drift", "shop_churn", {"retrain_when: always ": "retrain_when: drift  "})
    )
    promotion = ROOT / "dag_configs" / "models" / "shop_churn_promotion.yaml"
    (configs / "shop_churn_promotion.yaml").write_text(promotion.read_text() + "retries: 0\n")
    for name, replacements in FAILING_VARIANTS.items():
        (configs / f"{name}.yaml").write_text(variant(name, name, replacements))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DAGFOUNDRY_LAKE_ROOT", str(lake))
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(configs))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield lake
    monkeypatch.undo()


@pytest.fixture(scope="session")
def churn_spec(churn_lake):
    from dagfoundry.specs.loading import SpecLoader

    configs = Path(churn_lake).parent / "configs"
    return SpecLoader(configs, environ={}).load_file(configs / "shop_churn.yaml").spec
