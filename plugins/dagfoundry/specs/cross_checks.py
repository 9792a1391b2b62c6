"""Rules across specs of one config folder, applied by lint and by the DAG parse alike.

- A schedule on an Asset in dagfoundry's namespaces (``lake.``, ``features.``, ``models.``)
  that no spec produces is an error (a typo would wait forever), with a did-you-mean over the
  produced names. Other names are Assets of DAGs outside dagfoundry and are not checked.
- Two CDC specs may not capture the same ``source.name``: they would share offsets and lake paths.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from dagfoundry.errors import SpecError
from dagfoundry.specs.types import CronOrAssets

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

#: Asset name prefixes owned by dagfoundry kinds (see dagfoundry/assets.py).
DAGFOUNDRY_NAMESPACES = ("lake.", "features.", "models.")


def cross_spec_errors(specs: list[LoadedSpec]) -> list[tuple[LoadedSpec, SpecError]]:
    """Return the specs that break a rule across specs, each with its error (the later spec of a pair)."""
    return [*_unknown_schedule_assets(specs), *_shared_cdc_sources(specs)]


def _unknown_schedule_assets(specs: list[LoadedSpec]) -> list[tuple[LoadedSpec, SpecError]]:
    produced: set[str] = set()
    checked: tuple[str, ...] = DAGFOUNDRY_NAMESPACES
    for loaded in specs:
        names = loaded.spec.produced_assets()
        if names is None:  # a kind that does not declare its Assets: leave its namespace alone
            checked = ("lake.", "features.")
            continue
        produced.update(names)
    errors = []
    for loaded in specs:
        schedule = loaded.spec.schedule
        where: tuple[str | int, ...] = ("schedule", "assets") if isinstance(schedule, CronOrAssets) else ("schedule",)
        for index, name in enumerate(loaded.spec.schedule_assets):
            if not name.startswith(checked) or name in produced:
                continue
            close = difflib.get_close_matches(name, sorted(produced), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "check the producing spec's name and tables"
            message = f"no spec produces Asset {name!r}, so this DAG would never run; {hint}"
            errors.append(_error(loaded, (*where, index), "schedule", message))
            break
    return errors


def _shared_cdc_sources(specs: list[LoadedSpec]) -> list[tuple[LoadedSpec, SpecError]]:
    first: dict[str, LoadedSpec] = {}
    errors = []
    for loaded in specs:
        if loaded.spec.kind != "cdc_ingestion":
            continue
        source = loaded.spec.source.name  # type: ignore[attr-defined]
        if source not in first:
            first[source] = loaded
            continue
        where = first[source].document.position_of(("source", "name"))
        message = (
            f"source {source!r} is already captured by {where.path}:{where.line} ({first[source].spec.name}); "
            "two specs of one source would share offsets and lake paths: give each a distinct source.name"
        )
        errors.append(_error(loaded, ("source", "name"), "source.name", message))
    return errors


def _error(
    loaded: LoadedSpec, key_path: tuple[str | int, ...], key: str, message: str
) -> tuple[LoadedSpec, SpecError]:
    position = loaded.document.position_of(key_path)
    return loaded, SpecError(position.path, position.line, position.column, key, message)
