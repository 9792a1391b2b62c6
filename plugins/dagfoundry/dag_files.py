"""What the two modules in ``dags/`` call.

``dags/dagfoundry_dags.py`` registers one DAG per valid spec; ``dags/dagfoundry_spec_errors.py``
raises one combined error listing every broken spec. Airflow records an import error per
file, so broken specs show in the UI's import errors (with file, line, key and reason)
while every valid DAG stays loaded: a broken spec never hides a valid one.

Both share one load per process (a DagBag parsing the folder pays once); the DAG
processor parses each file in its own process. A worker that runs one task sets the
parsing context, and then only that DAG's spec is read and built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from dagfoundry.errors import SpecError, SpecErrors
from dagfoundry.last_valid import LastValidStore, flag_broken
from dagfoundry.registry import get_kind
from dagfoundry.specs.loading import (
    DEFAULTS_FILE,
    LoadedSpec,
    LoadResult,
    SpecLoader,
    default_config_dir,
    find_spec_files,
)

log = logging.getLogger(__name__)

_cache: dict[Path, tuple[tuple[Any, ...], LoadResult]] = {}


def register_valid_dags(namespace: dict[str, Any], config_dir: Path | None = None) -> list[str]:
    """Build a DAG for every valid spec and put it into ``namespace`` (the module's globals).

    :return: the dag ids built
    """
    from airflow.sdk import get_parsing_context

    root = (config_dir or default_config_dir()).resolve()
    started = time.perf_counter()
    wanted = get_parsing_context().dag_id
    fingerprint: tuple[Any, ...] | None = None  # of the whole folder; a worker's one-DAG parse has none
    result = LoadResult()
    if wanted:
        specs = _specs_for_worker(root, wanted)
    else:
        fingerprint, result = _load_with_fingerprint(root)
        specs = result.specs
    built: list[str] = []
    failures: list[SpecError] = []
    for loaded in specs:
        if wanted and loaded.spec.name != wanted:
            continue
        try:
            dag = build_dag(loaded)
        except Exception as exc:  # one factory failure must not hide the other DAGs of this file
            log.exception("dagfoundry could not build the DAG of %s", loaded.path)
            failures.append(SpecError(loaded.path, 1, 1, "", f"the DAG cannot be built: {type(exc).__name__}: {exc}"))
            continue
        namespace[f"dagfoundry__{loaded.spec.name}"] = dag
        built.append(loaded.spec.name)
    if fingerprint is not None:
        built += _keep_last_valid_versions(root, result, namespace, set(built))
        _record_build_failures(root, failures, fingerprint)
    log.debug("dagfoundry built %d DAG(s) from %s in %.3fs", len(built), root, time.perf_counter() - started)
    return built


def _keep_last_valid_versions(root: Path, result: LoadResult, namespace: dict[str, Any], built: set[str]) -> list[str]:
    """Record each valid spec; build a broken one's last valid version, flagged. Return the flagged dag ids."""
    store = LastValidStore(root)
    display = SpecLoader(root).display_path
    store.save_all([loaded for loaded in result.specs if loaded.spec.name in built])
    present = {display(path) for path in find_spec_files(root)}
    valid = {loaded.path for loaded in result.specs}
    flagged = []
    for path in sorted(present - valid):
        restored = store.restore(path)
        if restored is None or restored.spec.name in built:
            continue
        errors = [e.render() for e in result.errors if e.path == path or e.path.endswith(DEFAULTS_FILE)]
        try:
            dag = flag_broken(build_dag(restored), errors or ["the spec is broken"])
        except Exception:  # the last valid version no longer builds (a kind changed): only the error shows
            log.exception("dagfoundry could not rebuild the last valid version of %s", path)
            continue
        namespace[f"dagfoundry__{restored.spec.name}"] = dag
        flagged.append(restored.spec.name)
        built.add(restored.spec.name)
    store.forget_all_but(present)
    return flagged


def raise_spec_errors(config_dir: Path | None = None) -> None:
    """Raise one :class:`SpecErrors` listing every broken spec, or return when all are valid."""
    from airflow.sdk import get_parsing_context

    if get_parsing_context().dag_id:
        return  # a worker running one task does not need the error report
    root = (config_dir or default_config_dir()).resolve()
    result = load_config_dir(root)
    errors = [*result.errors, *_recorded_build_failures(root)]
    if errors:
        raise SpecErrors(errors)


def build_dag(loaded: LoadedSpec) -> Any:
    """Build the DAG of one valid spec with its kind's factory."""
    registration = get_kind(loaded.spec.kind)
    if registration is None:  # the loader checked the kind already
        raise SpecError(loaded.path, 1, 1, "kind", f"unknown kind {loaded.spec.kind!r}")
    return registration.factory(loaded)


def load_config_dir(root: Path) -> LoadResult:
    """Load every spec under ``root``, reusing this process's last result if no file changed."""
    return _load_with_fingerprint(root)[1]


def _load_with_fingerprint(root: Path) -> tuple[tuple[Any, ...], LoadResult]:
    """Load every spec under ``root`` as :func:`load_config_dir` does; also return the files' fingerprint."""
    files = find_spec_files(root)
    fingerprint = _fingerprint(root, files)
    cached = _cache.get(root)
    if cached and cached[0] == fingerprint:
        return fingerprint, cached[1]
    result = SpecLoader(root).load_all(files)
    _cache[root] = (fingerprint, result)
    return fingerprint, result


def _specs_for_worker(root: Path, dag_id: str) -> list[LoadedSpec]:
    """Load only the spec named ``dag_id``; specs named after their file are found directly."""
    loader = SpecLoader(root)
    for candidate in sorted(root.rglob(f"{dag_id}.y*ml")):
        try:
            loaded = loader.load_file(candidate)
        except SpecErrors:
            continue
        if loaded.spec.name == dag_id:
            return [loaded]
    found = [s for s in load_config_dir(root).specs if s.spec.name == dag_id]
    if not found:  # a DAG kept on its last valid version while its spec is broken
        restored = LastValidStore(root).restore_by_name(dag_id)
        found = [restored] if restored is not None else []
    return found


def _build_failures_file(root: Path) -> Path:
    """Where the DAG module tells the error module about factory failures (same machine, any process)."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dagfoundry-build-failures-{digest}.json"


def _record_build_failures(root: Path, failures: list[SpecError], fingerprint: tuple[Any, ...]) -> None:
    """Leave the failures for :func:`raise_spec_errors`, which runs in another parse process.

    :param fingerprint: fingerprint of the spec files the failing DAGs were built from
    """
    target = _build_failures_file(root)
    if not failures:
        target.unlink(missing_ok=True)
        return
    rows = [[f.path, f.line, f.column, f.key, f.message] for f in failures]
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"fingerprint": repr(fingerprint), "failures": rows}))
    os.replace(temporary, target)


def _recorded_build_failures(root: Path) -> list[SpecError]:
    """Return factory failures recorded for the specs as they are now (stale records are ignored)."""
    try:
        record = json.loads(_build_failures_file(root).read_text())
    except (OSError, ValueError):
        return []
    if record.get("fingerprint") != repr(_fingerprint(root, find_spec_files(root))):
        return []
    return [SpecError(*row) for row in record.get("failures", [])]


def _fingerprint(root: Path, files: list[Path]) -> tuple[Any, ...]:
    entries = []
    for path in [*files, *root.rglob(DEFAULTS_FILE)]:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))
