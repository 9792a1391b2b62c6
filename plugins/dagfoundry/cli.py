"""``python -m dagfoundry lint | schema | render | cdc-slots | cdc-drop-slot``: the spec author's tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagfoundry.errors import SpecError, SpecErrors
from dagfoundry.specs.documents import format_key_path
from dagfoundry.specs.loading import (
    DEFAULTS_FILE,
    LoadedSpec,
    LoadResult,
    SpecLoader,
    config_root_for,
    default_config_dir,
    find_spec_files,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="dagfoundry", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lint = commands.add_parser("lint", help="validate specs (without Airflow); exit 1 on any error")
    lint.add_argument("paths", nargs="*", type=Path, help="spec files or folders (default: the config folder)")
    lint.add_argument("--build", action="store_true", help="also build every DAG with its factory (imports Airflow)")
    schema = commands.add_parser("schema", help="write the JSON Schema of every kind")
    schema.add_argument("--out", type=Path, help="folder for <kind>.schema.json files (default: print)")
    render = commands.add_parser("render", help="print the DAG a spec generates")
    render.add_argument("spec", type=Path)
    for name, text in (("cdc-slots", "list the replication slots on a source, orphans (no spec) marked"),
                       ("cdc-drop-slot", "drop the slot and publication of a removed cdc_ingestion spec")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--conn-id", required=True, help="Airflow connection of the source PostgreSQL")
        command.add_argument("--database", help="database (default: the connection's schema)")
        command.add_argument("--configs", type=Path, nargs="*", help="spec folders that own slots (default: the config folder)")
        if name == "cdc-drop-slot":
            command.add_argument("--slot", required=True)
            command.add_argument("--publication", help="publication to drop too (default: the slot's name)")
    args = parser.parse_args(argv)
    if args.command in ("cdc-slots", "cdc-drop-slot"):
        return slots_command(args)
    if args.command == "lint":
        return lint_command(args.paths or [default_config_dir()], build=args.build)
    if args.command == "schema":
        return schema_command(args.out)
    return render_command(args.spec)


def lint_command(paths: list[Path], *, build: bool = False) -> int:
    """Print one line per error and a summary; return 1 when anything is wrong.

    Each path is checked within its whole config root (defaults and cross-spec rules see
    every spec there), but only the files under the given paths are reported.
    """
    result = LoadResult()
    files = 0
    requested: dict[Path, list[Path]] = {}
    loaders: dict[Path, SpecLoader] = {}
    for path in paths:
        if not path.exists():
            result.errors.append(SpecError(str(path), 0, 0, "", "no such file or folder"))
            continue
        root = config_root_for(path)
        requested.setdefault(root, []).append(path.resolve())
        loaders.setdefault(root, _loader_for(path, root))
    for root, wanted in requested.items():
        files += len({f.resolve() for w in wanted for f in find_spec_files(w)})
        part = loaders[root].load_all(find_spec_files(root))
        result.specs.extend(s for s in part.specs if _is_under(Path(s.path), wanted))
        result.errors.extend(e for e in part.errors if _concerns(Path(e.path), wanted))
    _check_unique_names(result)
    if build:
        result.errors.extend(_build_errors(result))
    for error in sorted(set(result.errors), key=lambda e: (e.path, e.line, e.column, e.key)):
        print(error.render())
    broken = len({e.path for e in result.errors})
    status = "ok" if not result.errors else f"{len(result.errors)} error(s) in {broken} file(s)"
    print(f"dagfoundry lint: {files} spec(s) checked, {len(result.specs)} valid; {status}")
    return 1 if result.errors else 0


def _is_under(file: Path, wanted: list[Path]) -> bool:
    resolved = file.resolve()
    return any(resolved == w or w in resolved.parents for w in wanted)


def _concerns(file: Path, wanted: list[Path]) -> bool:
    """Whether an error in ``file`` concerns the given paths (a defaults file above or below them does)."""
    if _is_under(file, wanted):
        return True
    folder = file.resolve().parent
    return file.name == DEFAULTS_FILE and any(folder in w.parents for w in wanted)


def schema_command(out: Path | None) -> int:
    """Write or print the JSON Schema of each kind (editors validate specs with it)."""
    from dagfoundry.registry import known_kinds, spec_model_of
    from dagfoundry.specs.json_schema import spec_json_schema

    for kind in known_kinds():
        model = spec_model_of(kind)
        assert model is not None
        schema = spec_json_schema(kind, model)
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        if out is None:
            print(text)
            continue
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{kind}.schema.json").write_text(text, encoding="utf-8")
        print(f"wrote {out / f'{kind}.schema.json'}")
    return 0


def render_command(spec_path: Path) -> int:
    """Print the tasks, dependencies, schedule and Assets of the DAG a spec generates."""
    from dagfoundry.dag_files import build_dag

    try:
        loaded = _loader_for(spec_path, config_root_for(spec_path)).load_file(spec_path)
    except SpecErrors as exc:
        for error in exc.errors:
            print(error.render())
        return 1
    dag = build_dag(loaded)
    print(describe_dag(dag, loaded.spec.produced_assets()))
    print(describe_defaults(loaded))
    return 0


def describe_defaults(loaded: LoadedSpec) -> str:
    """List the defaults files applied to a spec and each value that came from one."""
    lines = [f"  defaults applied: {', '.join(loaded.defaults) or '-'}"]
    positions = loaded.document.positions
    for key_path in sorted(positions, key=lambda k: tuple(str(p) for p in k)):
        position = positions[key_path]
        child_paths = [k for k in positions if len(k) > len(key_path) and k[: len(key_path)] == key_path]
        if not key_path or position.path == loaded.path or child_paths:
            continue
        value: Any = loaded.document.data
        for part in key_path:
            value = value[part]
        shown = loaded.document.raw_scalars.get(key_path, value)
        key = format_key_path(key_path)
        lines.append(f"    {key} = {json.dumps(shown, default=str)}  ({position.path}:{position.line})")
    return "\n".join(lines)


def slots_command(args: argparse.Namespace) -> int:
    """List the source's slots, or drop an orphaned one; return the exit status."""
    from dagfoundry.cdc import slot_admin
    from dagfoundry.cdc.connector_config import SourceConnection
    from dagfoundry.errors import DagfoundryError

    connection = SourceConnection.from_airflow(args.conn_id, args.database)
    owned = slot_admin.owned_slots(args.configs or [default_config_dir()])
    if args.command == "cdc-slots":
        print(slot_admin.format_slots(slot_admin.list_slots(connection, owned)))
        return 0
    try:
        result = slot_admin.drop_slot(connection, args.slot, args.publication or args.slot, owned)
    except DagfoundryError as exc:
        print(f"cdc-drop-slot: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def describe_dag(dag: Any, produced: list[str] | None = None) -> str:
    """Describe a DAG in plain text: schedule, Assets in and out, tasks in dependency order.

    :param produced: the Assets the spec says its DAG emits (tasks may emit them through an
        alias, so the outlets alone do not name them); the outlets when None
    """
    lines = [f"DAG {dag.dag_id}  (kind {loaded_kind(dag)}, owner {dag.owner})"]
    lines.append(f"  schedule: {_describe_schedule(dag)}")
    outlets = sorted({getattr(o, 'name', str(o)) for t in dag.tasks for o in (t.outlets or [])})
    lines.append(f"  assets out: {', '.join(sorted(produced) if produced is not None else outlets) or '-'}")
    lines.append(f"  params: {', '.join(sorted(dag.params)) or '-'}")
    lines.append("  tasks:")
    for task in dag.topological_sort():
        upstream = sorted(task.upstream_task_ids)
        after = f"  <- {', '.join(upstream)}" if upstream else ""
        lines.append(f"    {task.task_id} [{type(task).__name__}]{after}")
    return "\n".join(lines)


def loaded_kind(dag: Any) -> str:
    """Return the kind of a generated DAG (always one of its tags)."""
    from dagfoundry.registry import known_kinds

    kinds = sorted(set(dag.tags) & set(known_kinds()))
    return kinds[0] if kinds else "?"


def _describe_schedule(dag: Any) -> str:
    timetable = dag.timetable
    condition = getattr(timetable, "asset_condition", None)
    on_assets = ""
    if condition is not None:
        names = sorted(getattr(a, "name", str(a)) for a in getattr(condition, "objects", [condition]))
        on_assets = f"when these assets update: {', '.join(names)}"
    timed = getattr(timetable, "timetable", timetable)  # AssetOrTimeSchedule wraps a cron timetable
    expression = getattr(timed, "expression", None)
    if expression:
        cron = f"cron '{expression}' ({type(timed).__name__})"
        return f"{cron}, or {on_assets}" if on_assets else cron
    return on_assets or "manual only"


def _loader_for(path: Path, root: Path) -> SpecLoader:
    """Return a loader of ``root`` whose messages write paths as the user wrote ``path``."""
    below = path.resolve().relative_to(root).parts
    typed = path.parts
    shown = str(root)
    if len(typed) >= len(below) and ".." not in typed:
        candidate = Path(*typed[: len(typed) - len(below)]) if len(typed) > len(below) else Path(".")
        if candidate.resolve() == root:
            shown = str(candidate)
    return SpecLoader(root, shown_root=shown)


def _check_unique_names(result: LoadResult) -> None:
    seen: dict[str, str] = {}
    unique = []
    for loaded in result.specs:
        if loaded.spec.name in seen and seen[loaded.spec.name] != loaded.path:
            pos = loaded.document.position_of(("name",))
            message = f"{loaded.spec.name!r} is already the name of {seen[loaded.spec.name]}; names must be unique"
            result.errors.append(SpecError(pos.path, pos.line, pos.column, "name", message))
            continue
        seen[loaded.spec.name] = loaded.path
        unique.append(loaded)
    result.specs = unique


def _build_errors(result: LoadResult) -> list[SpecError]:
    from dagfoundry.dag_files import build_dag

    errors = []
    for loaded in result.specs:
        try:
            build_dag(loaded)
        except Exception as exc:  # a factory bug or a rule only the build can check
            errors.append(SpecError(loaded.path, 1, 1, "", f"the DAG cannot be built: {type(exc).__name__}: {exc}"))
    return errors


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
