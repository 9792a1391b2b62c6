"""Find spec files, apply ``defaults.yaml`` files, validate, and report every error at once.

Precedence, lowest first: ``<config root>/defaults.yaml``, then the ``defaults.yaml`` of
each folder on the way down to the spec's own folder, then the spec itself. Mappings merge
key by key; any other value (a list, a scalar) from a nearer file replaces the farther one.
``kind`` and ``name`` cannot come from defaults.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dagfoundry.errors import SpecError, SpecErrors
from dagfoundry.registry import get_kind, known_kinds
from dagfoundry.specs.base import DagSpec
from dagfoundry.specs.documents import Document, Position, read_document
from dagfoundry.specs.validation_errors import spec_errors_from_validation

DEFAULTS_FILE = "defaults.yaml"
SPEC_SUFFIXES = (".yaml", ".yml")
CONFIG_DIR_ENV = "DAGFOUNDRY_CONFIG_DIR"


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec, with the document it came from (for positions and rendering)."""

    path: str
    spec: DagSpec
    document: Document
    text: str


@dataclass
class LoadResult:
    """Every valid spec and every error found under a config folder."""

    specs: list[LoadedSpec] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)


def default_config_dir() -> Path:
    """Return ``$DAGFOUNDRY_CONFIG_DIR`` or the project's ``dag_configs/``."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "dag_configs"


def find_spec_files(root: Path) -> list[Path]:
    """Return spec files under ``root`` in a stable order (hidden and ``_`` paths skipped)."""
    if root.is_file():
        return [root]
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.endswith(SPEC_SUFFIXES) and name != DEFAULTS_FILE and not name.startswith((".", "_")):
                found.append(Path(directory) / name)
    return found


class SpecLoader:
    """Load specs under one config root, caching defaults files per folder.

    :param config_root: the folder whose ``defaults.yaml`` files apply
    :param environ: variables for ``${VAR}`` interpolation
    """

    def __init__(self, config_root: Path, environ: Mapping[str, str] | None = None) -> None:
        self.config_root = config_root.resolve()
        self.environ = os.environ if environ is None else environ
        self._defaults: dict[Path, Document | None] = {}

    def load_all(self, paths: Iterable[Path]) -> LoadResult:
        """Load every file; a broken one never hides another; duplicate names are errors."""
        result = LoadResult()
        first_by_name: dict[str, LoadedSpec] = {}
        for path in paths:
            try:
                loaded = self.load_file(path)
            except SpecErrors as exc:
                result.errors.extend(exc.errors)
                continue
            earlier = first_by_name.get(loaded.spec.name)
            if earlier is not None:
                where = loaded.document.position_of(("name",))
                first = earlier.document.position_of(("name",))
                message = f"{loaded.spec.name!r} is already the name of {first.path}:{first.line}; names must be unique"
                result.errors.append(SpecError(where.path, where.line, where.column, "name", message))
                continue
            first_by_name[loaded.spec.name] = loaded
            result.specs.append(loaded)
        # A broken defaults file is reported once, not once per spec below it.
        result.errors = list(dict.fromkeys(result.errors))
        return result

    def load_file(self, path: Path) -> LoadedSpec:
        """Read, merge defaults into, and validate one spec file.

        :raises SpecErrors: every problem of this file
        """
        shown = _display_path(path)
        text = path.read_text(encoding="utf-8")
        document = read_document(shown, text, self.environ)
        layers = [d for d in self._defaults_chain(path.resolve().parent) if d is not None]
        merged = merge_documents([*layers, document]) if layers else document
        registration = get_kind(_kind_of(document))
        assert registration is not None  # _kind_of raised otherwise
        try:
            spec = registration.spec_model.model_validate(merged.data)
        except ValidationError as exc:
            raise SpecErrors(spec_errors_from_validation(exc, merged, registration.spec_model, shown)) from None
        return LoadedSpec(path=shown, spec=spec, document=merged, text=text)

    def _defaults_chain(self, folder: Path) -> list[Document | None]:
        chain = []
        current = folder
        while True:
            chain.append(self._defaults_of(current))
            if current == self.config_root or current.parent == current or self.config_root not in current.parents:
                break
            current = current.parent
        return list(reversed(chain))

    def _defaults_of(self, folder: Path) -> Document | None:
        if folder not in self._defaults:
            candidate = folder / DEFAULTS_FILE
            document = None
            if candidate.is_file():
                document = read_document(_display_path(candidate), candidate.read_text("utf-8"), self.environ)
                for reserved in ("kind", "name"):
                    if reserved in document.data:
                        pos = document.positions[(reserved,)]
                        message = f"{reserved!r} cannot have a default; set it in each spec"
                        raise SpecErrors([SpecError(pos.path, pos.line, pos.column, reserved, message)])
            self._defaults[folder] = document
        return self._defaults[folder]


def _kind_of(document: Document) -> str:
    kind = document.data.get("kind")
    kinds = known_kinds()
    if kind is None:
        root = document.position_of(())
        message = f"required key is missing; one of: {', '.join(kinds)}"
        raise SpecErrors([SpecError(document.path, root.line, root.column, "kind", message)])
    if not isinstance(kind, str) or get_kind(kind) is None:
        pos = document.positions[("kind",)]
        close = difflib.get_close_matches(str(kind), kinds, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known kinds: {', '.join(kinds)}"
        raise SpecErrors([SpecError(pos.path, pos.line, pos.column, "kind", f"unknown kind {kind!r}; {hint}")])
    return kind


def merge_documents(layers: list[Document]) -> Document:
    """Merge documents, lowest precedence first, keeping each value's own position."""
    merged = Document(path=layers[-1].path, data={})
    for layer in layers:
        _overlay(merged, layer, merged.data, layer.data, ())
    merged.positions[()] = layers[-1].positions.get((), Position(layers[-1].path, 1, 1))
    return merged


def _overlay(merged: Document, layer: Document, target: dict[str, Any], source: dict[str, Any], path: tuple) -> None:
    for key, value in source.items():
        child = (*path, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merged.positions[child] = layer.positions[child]
            _overlay(merged, layer, target[key], value, child)
            continue
        for stale in [p for p in merged.positions if p[: len(child)] == child]:
            del merged.positions[stale]
            merged.raw_scalars.pop(stale, None)
        target[key] = deepcopy(value)
        for found, position in layer.positions.items():
            if found[: len(child)] == child:
                merged.positions[found] = position
        for found, raw in layer.raw_scalars.items():
            if found[: len(child)] == child:
                merged.raw_scalars[found] = raw


def _display_path(path: Path) -> str:
    """Show paths relative to the working directory when they are under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
