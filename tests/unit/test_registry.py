from __future__ import annotations

import sys

import pytest

from dagfoundry import registry
from dagfoundry.specs.base import DagSpec


class _ProbeSpec(DagSpec):
    pass


def test_a_registered_kind_is_found_and_can_be_removed():
    registry.register_kind("probe_kind", _ProbeSpec)(lambda loaded: "built")
    try:
        found = registry.get_kind("probe_kind")
        assert found.spec_model is _ProbeSpec and found.factory(None) == "built"
        assert "probe_kind" in registry.known_kinds()
    finally:
        registry.unregister_kind("probe_kind")
    assert registry.get_kind("probe_kind") is None


def test_extra_kind_modules_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(registry.KIND_MODULES_ENV, "tests.fixtures.chain_kind")
    monkeypatch.setattr(registry, "_extra_modules_loaded", False)
    registry.unregister_kind("test_chain")
    sys.modules.pop("tests.fixtures.chain_kind", None)
    assert registry.get_kind("test_chain").spec_model.__name__ == "ChainSpec"


def test_builtin_kinds_import_their_module_only_when_used(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN_KINDS, "lazy_kind", "tests.unit.lazy_kind_module")
    with pytest.raises(ModuleNotFoundError, match="lazy_kind_module"):
        registry.get_kind("lazy_kind")
