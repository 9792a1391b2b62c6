"""Fixtures of the feature engine's integration tests."""

from __future__ import annotations

import pandas as pd
import pytest
from feature_lake import make_orders, make_sessions


@pytest.fixture(scope="session")
def events() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_orders(), make_sessions()
