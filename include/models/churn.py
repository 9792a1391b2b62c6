"""The churn example's trainer: a scikit-learn pipeline (median imputation, gradient boosting).

Contract of a trainer: ``train(frame, label_column, params) -> fitted model`` where ``frame``
holds the spec's feature columns and the label; the model needs ``predict_proba`` (or
``predict``). ``params`` carries the spec's ``trainer.params`` (overridden per run from the
UI) and ``seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def train(frame: pd.DataFrame, label_column: str, params: dict[str, Any]) -> Any:
    """Fit median imputation then gradient boosting; only types MLflow's skops format trusts."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    features = frame.drop(columns=[label_column])
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        GradientBoostingClassifier(
            n_estimators=int(params.get("n_estimators", 100)),
            learning_rate=float(params.get("learning_rate", 0.1)),
            max_depth=int(params.get("max_depth", 3)),
            random_state=int(params.get("seed", 0)),
        ),
    )
    return model.fit(features, frame[label_column])
