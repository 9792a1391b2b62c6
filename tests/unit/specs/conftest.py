"""Register the small test kind for spec tests (the documented extension point)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def chain_kind(monkeypatch):
    import dagfoundry.registry as registry

    monkeypatch.setenv(registry.KIND_MODULES_ENV, "tests.fixtures.chain_kind")
    monkeypatch.setattr(registry, "_extra_modules_loaded", False)
    import tests.fixtures.chain_kind as module

    registry.register_kind("test_chain", module.ChainSpec)(module.build_chain)
    yield
