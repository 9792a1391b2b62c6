"""The registry of kinds: ``kind:`` in a spec -> its spec model and its DAG factory.

A new kind is one spec model, one factory module calling :func:`register_kind`, and one
line in :data:`BUILTIN_KINDS` naming both; the loader never changes. Validating a spec
imports only its spec model (no factory, no Airflow): ``lint`` stays fast and light. Platform teams add their own
kinds without forking by listing importable modules in ``DAGFOUNDRY_KIND_MODULES``
(comma-separated); each module registers its kinds when imported. Modules are imported
only when a spec of their kind is seen, so parsing pays only for the kinds in use.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagfoundry.specs.base import DagSpec
    from dagfoundry.specs.loading import LoadedSpec

#: kind -> ("spec.module:SpecModel", "factory.module"), each imported on first use. A plain
#: "factory.module" string also works (the factory's ``register_kind`` then names the spec
#: model), but validating such a kind imports its factory and Airflow.
BUILTIN_KINDS: dict[str, tuple[str, str] | str] = {
    "cdc_ingestion": ("dagfoundry.specs.cdc_ingestion:CdcIngestionSpec", "dagfoundry.factories.cdc_ingestion"),
    "feature_backfill": ("dagfoundry.specs.feature_backfill:FeatureBackfillSpec", "dagfoundry.factories.feature_backfill"),
    "lake_compaction": ("dagfoundry.specs.lake_compaction:LakeCompactionSpec", "dagfoundry.factories.lake_compaction"),
    "model_promotion": ("dagfoundry.specs.model_promotion:ModelPromotionSpec", "dagfoundry.factories.model_promotion"),
    "retraining": ("dagfoundry.specs.retraining:RetrainingSpec", "dagfoundry.factories.retraining"),
}

KIND_MODULES_ENV = "DAGFOUNDRY_KIND_MODULES"

#: A factory turns a validated spec into an Airflow DAG.
DagFactory = Callable[["LoadedSpec"], Any]


@dataclass(frozen=True)
class KindRegistration:
    """What the registry knows of one kind."""

    kind: str
    spec_model: type[DagSpec]
    factory: DagFactory


_registered: dict[str, KindRegistration] = {}
_extra_modules_loaded = False


def register_kind(kind: str, spec_model: type[DagSpec]) -> Callable[[DagFactory], DagFactory]:
    """Register ``kind`` with its spec model; decorate the factory function.

    :param kind: the value of ``kind:`` in specs
    :param spec_model: the pydantic model validating the spec (a ``DagSpec`` subclass)
    """

    def decorate(factory: DagFactory) -> DagFactory:
        _registered[kind] = KindRegistration(kind=kind, spec_model=spec_model, factory=factory)
        return factory

    return decorate


def unregister_kind(kind: str) -> None:
    """Forget ``kind`` (tests register and remove kinds of their own)."""
    _registered.pop(kind, None)


def get_kind(kind: str) -> KindRegistration | None:
    """Return the registration of ``kind`` (spec model and factory), importing its factory on first use, or None."""
    if kind not in _registered and kind in BUILTIN_KINDS:
        importlib.import_module(_factory_module(BUILTIN_KINDS[kind]))
    if kind not in _registered:
        _load_extra_modules()
    return _registered.get(kind)


def spec_model_of(kind: str) -> type[DagSpec] | None:
    """Return the spec model of ``kind`` without importing its factory when the kind names its model, or None."""
    if kind in _registered:
        return _registered[kind].spec_model
    entry = BUILTIN_KINDS.get(kind)
    if isinstance(entry, tuple):
        module, _, name = entry[0].partition(":")
        model: type[DagSpec] = getattr(importlib.import_module(module), name)
        return model
    registration = get_kind(kind)
    return registration.spec_model if registration else None


def _factory_module(entry: tuple[str, str] | str) -> str:
    return entry[1] if isinstance(entry, tuple) else entry


def known_kinds() -> list[str]:
    """Return every kind that can be used, sorted."""
    _load_extra_modules()
    return sorted(set(BUILTIN_KINDS) | set(_registered))


def all_registrations() -> list[KindRegistration]:
    """Import every kind and return their registrations (for ``schema``), sorted by kind."""
    for kind in known_kinds():
        get_kind(kind)
    return [_registered[k] for k in sorted(_registered)]


def _load_extra_modules() -> None:
    global _extra_modules_loaded
    if _extra_modules_loaded:
        return
    _extra_modules_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(KIND_MODULES_ENV, "").split(","))):
        importlib.import_module(module)
