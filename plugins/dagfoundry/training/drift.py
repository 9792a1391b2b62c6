"""Feature drift between the new training window and the data the champion was trained on.

Per feature: the population stability index (PSI, on the reference's quantile bins; on
category shares for text columns) and the two-sample Kolmogorov-Smirnov statistic (numeric
columns, scipy). A feature drifts when either passes its threshold; a PSI past the hard
bound is a data problem that fails the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dagfoundry.specs.retraining import DriftSpec

#: Share given to an empty bin so the PSI stays finite.
_EPSILON = 1e-4


def psi(reference: pd.Series, current: pd.Series, bins: int) -> float:
    """Return the population stability index of ``current`` against ``reference``."""
    import numpy as np
    import pandas as pd

    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:
        return 0.0
    if pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref):
        edges = np.unique(np.quantile(ref.astype("float64"), np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        edges[0], edges[-1] = -np.inf, np.inf
        expected = np.histogram(ref.astype("float64"), edges)[0] / len(ref)
        actual = np.histogram(cur.astype("float64"), edges)[0] / len(cur)
    else:
        categories = sorted(set(ref.astype(str)) | set(cur.astype(str)))
        expected = ref.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
        actual = cur.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
    return _psi_of_shares(expected, actual)


def _psi_of_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    import numpy as np

    expected = np.clip(expected, _EPSILON, None)
    actual = np.clip(actual, _EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_statistic(reference: pd.Series, current: pd.Series) -> float | None:
    """Return the two-sample KS statistic, or None for non-numeric or empty columns."""
    import pandas as pd
    from scipy.stats import ks_2samp

    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty or not pd.api.types.is_numeric_dtype(ref) or pd.api.types.is_bool_dtype(ref):
        return None
    return float(ks_2samp(ref.astype("float64"), cur.astype("float64")).statistic)


def compare(reference: pd.DataFrame, current: pd.DataFrame, features: list[str], policy: DriftSpec) -> dict[str, Any]:
    """Return the drift report: per feature PSI, KS and whether it drifts; overall flags.

    :return: ``{"features": {name: {...}}, "drifted": [...], "beyond_hard_bound": [...]}``
    """
    per_feature: dict[str, dict[str, Any]] = {}
    for name in features:
        value_psi = psi(reference[name], current[name], policy.bins)
        value_ks = ks_statistic(reference[name], current[name])
        drifts = value_psi > policy.psi_threshold or (value_ks is not None and value_ks > policy.ks_threshold)
        per_feature[name] = {"psi": round(value_psi, 6), "ks": None if value_ks is None else round(value_ks, 6),
                             "drift": drifts}
    hard = policy.psi_hard_bound
    return {
        "features": per_feature,
        "drifted": sorted(n for n, f in per_feature.items() if f["drift"]),
        "beyond_hard_bound": sorted(n for n, f in per_feature.items() if hard is not None and f["psi"] > hard),
        "reference_rows": len(reference),
        "current_rows": len(current),
    }
