"""``python -m dagfoundry lint | schema | render | cdc-slots | cdc-drop-slot``: the spec author's tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagfoundry.errors import SpecError, SpecErrors
from dagfoundry.specs.loading import LoadResult, SpecLoader, default_config_dir, find_spec_files


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="dagfoundry", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    lint = commands.add_parser("lint", help="validate specs and build their DAGs; exit 1 on any error")
    lint.add_argument("paths", nargs="*", type=Path, help="spec files or folders (default: the config folder)")
    lint.add_argument("--no-build", action="store_true", help="validate only; do not build the DAGs")
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
        return lint_command(args.paths or [default_config_dir()], build=not args.no_build)
    if args.command == "schema":
        return schema_command(args.out)
    return render_command(args.spec)


def lint_command(paths: list[Path], *, build: bool = True) -> int:
    """Print one line per error and a summary; return 1 when anything is wrong."""
    result = LoadResult()
    files = 0
    for path in paths:
        if not path.exists():
            result.errors.append(SpecError(str(path), 0, 0, "", "no such file or folder"))
            continue
        found = find_spec_files(path)
        files += len(found)
        part = _loader_for(path).load_all(found)
        result.specs.extend(part.specs)
        result.errors.extend(part.errors)
    _check_unique_names(result)
    if build:
        result.errors.extend(_build_errors(result))
    for error in sorted(set(result.errors), key=lambda e: (e.path, e.line, e.column, e.key)):
        print(error.render())
    broken = len({e.path for e in result.errors})
    status = "ok" if not result.errors else f"{len(result.errors)} error(s) in {broken} file(s)"
    print(f"dagfoundry lint: {files} spec(s) checked, {len(result.specs)} valid; {status}")
    return 1 if result.errors else 0


def schema_command(out: Path | None) -> int:
    """Write or print the JSON Schema of each kind (editors validate specs with it)."""
    from dagfoundry.registry import all_registrations

    for registration in all_registrations():
        schema = registration.spec_model.model_json_schema(mode="validation")
        schema["title"] = f"dagfoundry {registration.kind} spec"
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        if out is None:
            print(text)
            continue
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{registration.kind}.schema.json").write_text(text, encoding="utf-8")
        print(f"wrote {out / f'{registration.kind}.schema.json'}")
    return 0


def render_command(spec_path: Path) -> int:
    """Print the tasks, dependencies, schedule and Assets of the DAG a spec generates."""
    from dagfoundry.dag_files import build_dag

    try:
        loaded = _loader_for(spec_path).load_file(spec_path)
    except SpecErrors as exc:
        for error in exc.errors:
            print(error.render())
        return 1
    dag = build_dag(loaded)
    print(describe_dag(dag))
    return 0


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


def describe_dag(dag: Any) -> str:
    """Describe a DAG in plain text: schedule, Assets in and out, tasks in dependency order."""
    lines = [f"DAG {dag.dag_id}  (kind {loaded_kind(dag)}, owner {dag.owner})"]
    lines.append(f"  schedule: {_describe_schedule(dag)}")
    outlets = sorted({getattr(o, 'name', str(o)) for t in dag.tasks for o in (t.outlets or [])})
    lines.append(f"  assets out: {', '.join(outlets) or '-'}")
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
    expression = getattr(timetable, "expression", None)
    if expression:
        return f"cron '{expression}' ({type(timetable).__name__})"
    condition = getattr(timetable, "asset_condition", None)
    if condition is not None:
        names = sorted(getattr(a, "name", str(a)) for a in getattr(condition, "objects", [condition]))
        return f"when these assets update: {', '.join(names)}"
    return "manual only"


def _loader_for(path: Path) -> SpecLoader:
    """Apply the config folder's defaults when ``path`` lies in it, else the path's own folder's."""
    config_root = default_config_dir().resolve()
    resolved = path.resolve()
    if resolved == config_root or config_root in resolved.parents:
        return SpecLoader(config_root)
    return SpecLoader(resolved if resolved.is_dir() else resolved.parent)


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
