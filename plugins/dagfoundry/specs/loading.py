"""Find spec files, apply ``defaults.yaml`` files, validate, and report every error at once.

The config root is found the same way for a file and a folder (:func:`config_root_for`):
``$DAGFOUNDRY_CONFIG_DIR`` when it contains the path, else the highest folder holding a
``defaults.yaml`` on the way up from the path, below the project boundary (the first folder
whose parent holds ``.git`` or ``pyproject.toml``); without any, the path's own folder.

A defaults file applies its keys to every spec below it, and the keys under
``kinds: {<kind>: ...}`` to specs of that kind only (over the shared ones of the same file),
so kind-specific keys never break the other kinds of the folder.

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
from dagfoundry.registry import known_kinds, spec_model_of
from dagfoundry.specs.base import DagSpec
from dagfoundry.specs.cross_checks import cross_spec_errors
from dagfoundry.specs.documents import Document, Position, read_document, read_spec_text
from dagfoundry.specs.validation_errors import spec_errors_from_validation

DEFAULTS_FILE = "defaults.yaml"
SPEC_SUFFIXES = (".yaml", ".yml")
CONFIG_DIR_ENV = "DAGFOUNDRY_CONFIG_DIR"
#: A folder holding one of these is a project root: the config root search stops below it.
PROJECT_MARKERS = (".git", "pyproject.toml")
#: Key of a defaults file whose sections apply to one kind each (``kinds: {cdc_ingestion: {...}}``).
KINDS_KEY = "kinds"


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec, with the document it came from (for positions and rendering)."""

    path: str
    spec: DagSpec
    document: Document
    text: str
    #: the defaults files applied, farthest first, as shown in messages
    defaults: tuple[str, ...] = ()


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


def config_root_for(path: Path) -> Path:
    """Return the config root whose ``defaults.yaml`` files apply to ``path`` (a spec file or a folder)."""
    resolved = path.resolve()
    folder = resolved if resolved.is_dir() else resolved.parent
    configured = os.environ.get(CONFIG_DIR_ENV)
    if configured:
        root = Path(configured).resolve()
        if root == folder or root in folder.parents:
            return root
    highest = folder
    current = folder
    while not any((current / marker).exists() for marker in PROJECT_MARKERS):
        if (current / DEFAULTS_FILE).is_file():
            highest = current
        if current.parent == current or any((current.parent / m).exists() for m in PROJECT_MARKERS):
            break
        current = current.parent
    return highest


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
    :param shown_root: how messages write the config root (default: its folder name), so a
        file shows as ``<shown_root>/<path below the root>`` whatever the working directory
    """

    def __init__(
        self, config_root: Path, environ: Mapping[str, str] | None = None, shown_root: str | None = None
    ) -> None:
        self.config_root = config_root.resolve()
        self.environ = os.environ if environ is None else environ
        self.shown_root = self.config_root.name if shown_root is None else shown_root
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
        crossed = cross_spec_errors(result.specs)
        result.errors.extend(error for _, error in crossed)
        result.specs = [s for s in result.specs if all(s is not bad for bad, _ in crossed)]
        # A broken defaults file is reported once, not once per spec below it.
        result.errors = list(dict.fromkeys(result.errors))
        return result

    def load_file(self, path: Path) -> LoadedSpec:
        """Read, merge defaults into, and validate one spec file.

        :raises SpecErrors: every problem of this file
        """
        shown = self.display_path(path)
        text = read_spec_text(path, shown)
        document = read_document(shown, text, self.environ)
        kind = _kind_of(document)
        layers = [d for d in self._defaults_chain(path.resolve().parent) if d is not None]
        merged = merge_documents([*(_for_kind(d, kind) for d in layers), document]) if layers else document
        model = spec_model_of(kind)
        assert model is not None  # _kind_of raised otherwise
        try:
            spec = model.model_validate(merged.data)
        except ValidationError as exc:
            raise SpecErrors(spec_errors_from_validation(exc, merged, model, shown)) from None
        return LoadedSpec(path=shown, spec=spec, document=merged, text=text, defaults=tuple(d.path for d in layers))

    def display_path(self, path: Path) -> str:
        """Write ``path`` as messages show it: below the shown config root, or absolute outside it."""
        text, root = str(path), str(self.config_root)
        if text.startswith(root + os.sep):  # found under the (resolved) root: no file system call
            return str(Path(self.shown_root) / text[len(root) + 1 :])
        resolved = path.absolute().parent.resolve() / path.name  # a symlinked spec keeps its own name
        try:
            below = resolved.relative_to(self.config_root)
        except ValueError:
            return str(resolved)
        return str(Path(self.shown_root) / below)

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
                shown = self.display_path(candidate)
                document = read_document(shown, read_spec_text(candidate, shown), self.environ)
                _check_kind_sections(document)
                for reserved in ("kind", "name"):
                    if reserved in document.data:
                        pos = document.positions[(reserved,)]
                        message = f"{reserved!r} cannot have a default; set it in each spec"
                        raise SpecErrors([SpecError(pos.path, pos.line, pos.column, reserved, message)])
            self._defaults[folder] = document
        return self._defaults[folder]


def _check_kind_sections(document: Document) -> None:
    """``kinds:`` in a defaults file maps known kinds to defaults for that kind only."""
    sections = document.data.get(KINDS_KEY)
    if sections is None:
        return
    errors = []
    if not isinstance(sections, dict):
        pos = document.position_of((KINDS_KEY,))
        errors.append(SpecError(pos.path, pos.line, pos.column, KINDS_KEY, "must map kinds to their defaults"))
    else:
        kinds = known_kinds()
        for kind, section in sections.items():
            pos = document.position_of((KINDS_KEY, kind))
            if kind not in kinds:
                close = difflib.get_close_matches(str(kind), kinds, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known kinds: {', '.join(kinds)}"
                errors.append(SpecError(pos.path, pos.line, pos.column, f"{KINDS_KEY}.{kind}", f"unknown kind; {hint}"))
            elif not isinstance(section, dict):
                message = "must be a mapping of that kind's keys"
                errors.append(SpecError(pos.path, pos.line, pos.column, f"{KINDS_KEY}.{kind}", message))
    if errors:
        raise SpecErrors(errors)


def _for_kind(defaults: Document, kind: str) -> Document:
    """Return the defaults that apply to ``kind``: the shared keys, then its ``kinds:`` section over them."""
    if KINDS_KEY not in defaults.data:
        return defaults
    shared = Document(path=defaults.path, data={k: v for k, v in defaults.data.items() if k != KINDS_KEY})
    section = Document(path=defaults.path, data=defaults.data[KINDS_KEY].get(kind) or {})
    for key_path, position in defaults.positions.items():
        if key_path[:1] != (KINDS_KEY,):
            shared.positions[key_path] = position
        elif key_path[1:2] == (kind,) and len(key_path) > 2:
            section.positions[key_path[2:]] = position
    for key_path, raw in defaults.raw_scalars.items():
        if key_path[:1] != (KINDS_KEY,):
            shared.raw_scalars[key_path] = raw
        elif key_path[1:2] == (kind,):
            section.raw_scalars[key_path[2:]] = raw
    return merge_documents([shared, section])


def _kind_of(document: Document) -> str:
    kind = document.data.get("kind")
    kinds = known_kinds()
    if kind is None:
        root = document.position_of(())
        message = f"required key is missing; one of: {', '.join(kinds)}"
        raise SpecErrors([SpecError(document.path, root.line, root.column, "kind", message)])
    if not isinstance(kind, str) or spec_model_of(kind) is None:
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
