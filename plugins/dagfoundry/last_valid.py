"""The last valid version of each spec, kept so a broken edit does not make its DAG vanish.

When a spec that was valid is edited into a broken state, ``dags/dagfoundry_dags.py`` keeps
building its DAG from the last valid version, flagged (tag ``spec-error``, description and
documentation naming the error), while ``dags/dagfoundry_spec_errors.py`` reports the error.
A spec that was never valid shows only as an import error.

The versions live in a state folder every parse process of a deployment must see:
``$DAGFOUNDRY_STATE_DIR``, else ``$AIRFLOW_HOME/dagfoundry_state`` (``~/airflow`` without
``AIRFLOW_HOME``), one sub-folder per config root. Several DAG processors on one machine
share it as is (files are replaced atomically, and all writers write the same content);
on several machines put it on shared storage, or a processor that never saw a valid
version of a spec cannot keep its DAG. Deleting a spec file deletes its DAG and its record.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dagfoundry.specs.documents import Document

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

STATE_DIR_ENV = "DAGFOUNDRY_STATE_DIR"
#: Digest of each record, so a parse with nothing changed reads one file and writes none.
INDEX_FILE = "index.json"
#: The tag a DAG built from the last valid version of a broken spec carries.
SPEC_ERROR_TAG = "spec-error"

try:
    _Loader: type = yaml.CSafeLoader
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader, _Dumper = yaml.SafeLoader, yaml.SafeDumper


def state_dir() -> Path:
    """Return the folder of dagfoundry's parse-time state."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home) / "dagfoundry_state"


@dataclass(frozen=True)
class LastValidStore:
    """The last valid versions of the specs under one config root.

    :param config_root: the config root the specs belong to
    """

    config_root: Path

    @property
    def folder(self) -> Path:
        digest = hashlib.sha1(str(self.config_root.resolve()).encode()).hexdigest()[:12]
        return state_dir() / f"last_valid-{digest}"

    def save_all(self, specs: list[LoadedSpec]) -> None:
        """Record each spec as the last valid version of its file (only the changed ones are written)."""
        index = self._read_index()
        changed = False
        for loaded in specs:
            name = self._file_of(loaded.path).name
            digest = _digest(loaded)
            if index.get(name) == digest and (self.folder / name).exists():
                continue
            self._write(self.folder / name, yaml.dump(_record(loaded), Dumper=_Dumper, sort_keys=True, allow_unicode=True))
            index[name] = digest
            changed = True
        if changed:
            self._write(self.folder / INDEX_FILE, json.dumps(index, sort_keys=True))

    def restore(self, path: str) -> LoadedSpec | None:
        """Return the last valid version of the spec file shown as ``path``, or None."""
        try:
            record = yaml.load(self._file_of(path).read_text(encoding="utf-8"), Loader=_Loader)
        except (OSError, yaml.YAMLError):
            return None
        return _loaded_from(record)

    def restore_by_name(self, dag_id: str) -> LoadedSpec | None:
        """Return the last valid version of the spec named ``dag_id`` (a worker running a flagged DAG)."""
        for file in sorted(self.folder.glob("*.yaml")):  # a worker's rare path: only while a spec is broken
            try:
                record = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader)
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(record, dict) and record.get("name") == dag_id:
                return _loaded_from(record)
        return None

    def forget_all_but(self, paths: set[str]) -> None:
        """Delete the records of spec files that no longer exist (their DAGs go with them)."""
        index = self._read_index()
        keep = {self._file_of(p).name for p in paths}
        gone = [name for name in index if name not in keep]
        for name in gone:
            (self.folder / name).unlink(missing_ok=True)
            del index[name]
        if gone:
            self._write(self.folder / INDEX_FILE, json.dumps(index, sort_keys=True))

    def _read_index(self) -> dict[str, str]:
        try:
            index = json.loads((self.folder / INDEX_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return index if isinstance(index, dict) else {}

    def _write(self, target: Path, text: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)

    def _file_of(self, path: str) -> Path:
        return self.folder / (hashlib.sha1(path.encode()).hexdigest()[:16] + ".yaml")


def _record(loaded: LoadedSpec) -> dict[str, Any]:
    return {
        "path": loaded.path,
        "name": loaded.spec.name,
        "text": loaded.text,
        "data": loaded.document.data,
        "raw_scalars": [[list(key), raw] for key, raw in loaded.document.raw_scalars.items()],
        "defaults": list(loaded.defaults),
    }


def _digest(loaded: LoadedSpec) -> str:
    raw = sorted(loaded.document.raw_scalars.items(), key=repr)
    identity = (loaded.path, loaded.text, loaded.document.data, raw, loaded.defaults)
    return hashlib.sha1(repr(identity).encode()).hexdigest()


def _loaded_from(record: Any) -> LoadedSpec | None:
    from pydantic import ValidationError

    from dagfoundry.registry import spec_model_of
    from dagfoundry.specs.loading import LoadedSpec

    try:
        model = spec_model_of(record["data"]["kind"])
        if model is None:
            return None
        spec = model.model_validate(record["data"])
        raw = {tuple(key): value for key, value in record["raw_scalars"]}
        document = Document(path=record["path"], data=record["data"], raw_scalars=raw)
        return LoadedSpec(
            path=record["path"], spec=spec, document=document, text=record["text"], defaults=tuple(record["defaults"])
        )
    except (KeyError, TypeError, ValidationError):  # a record of an older dagfoundry or kind: ignore it
        return None


def flag_broken(dag: Any, errors: list[str]) -> Any:
    """Mark a DAG built from the last valid version of a spec that is now broken."""
    dag.tags.add(SPEC_ERROR_TAG)
    dag.description = f"SPEC BROKEN, running its last valid version: {errors[0]}"[:200]
    listed = "\n".join(errors)
    warning = (
        "> **The spec of this DAG is broken.** The DAG runs its last valid version until the spec "
        "is fixed (see *Import errors*):\n\n```\n" + listed + "\n```\n\n"
    )
    dag.doc_md = warning + (dag.doc_md or "")
    return dag
