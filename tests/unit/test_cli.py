"""``python -m dagfoundry``: lint, schema and render as a spec author uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "bad_specs"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]), **env}
    return subprocess.run(
        [sys.executable, "-m", "dagfoundry", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_lint_passes_on_the_project_examples():
    done = run_cli("lint", "dag_configs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith("; ok")


def test_lint_prints_one_precise_line_per_broken_file_and_exits_1():
    done = run_cli("lint", str(CORPUS.relative_to(ROOT)))
    assert done.returncode == 1
    # Airflow's own start-up logging (unit-test mode) may precede the report: keep our lines.
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith(("tests/", "dagfoundry lint:"))]
    errors, summary = lines[:-1], lines[-1]
    valid = ("duplicate_name_a.yaml", "shared_source_a.yaml")
    broken = sorted(p.name for p in CORPUS.glob("*.yaml") if p.name not in valid)
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in errors) == broken
    for line in errors:
        path, line_no, column, rest = line.split(":", 3)
        assert path.startswith("tests/fixtures/bad_specs/") and line_no.isdigit() and column.isdigit() and rest.strip()
    assert summary == f"dagfoundry lint: {len(broken) + 2} spec(s) checked, 2 valid; {len(broken)} error(s) in {len(broken)} file(s)"


def test_committed_schemas_match_the_models(tmp_path):
    done = run_cli("schema", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == sorted(p.name for p in (ROOT / "schemas").glob("*.json")), "run: python -m dagfoundry schema --out schemas"
    for name in generated:
        assert json.loads((tmp_path / name).read_text()) == json.loads((ROOT / "schemas" / name).read_text()), name


def test_example_specs_carry_the_schema_modeline():
    for spec in (ROOT / "dag_configs").rglob("*.yaml"):
        if spec.name == "defaults.yaml":
            continue
        first = spec.read_text().splitlines()[0]
        kind = next(line.split(":", 1)[1].strip() for line in spec.read_text().splitlines() if line.startswith("kind:"))
        assert first.startswith("# yaml-language-server: $schema="), spec
        assert (spec.parent / first.split("=", 1)[1]).resolve() == (ROOT / "schemas" / f"{kind}.schema.json"), spec


def test_render_shows_schedule_assets_and_task_order():
    done = run_cli("render", "dag_configs/cdc/shop.yaml")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "schedule: cron '*/15 * * * *'" in out
    assert "assets out: lake.mirror.shop.public.customers, lake.mirror.shop.public.orders" in out
    assert out.index("capture [") < out.index("check_quality [") < out.index("duckdb_mirror [") < out.index("publish_mirror [")
    # owner is in the spec itself; retries and retry_delay come from the root defaults file
    assert "defaults applied: dag_configs/defaults.yaml" in out
    assert 'retry_delay = "2m"  (dag_configs/defaults.yaml:4)' in out and "owner =" not in out


def test_one_file_is_checked_against_the_assets_its_whole_folder_produces():
    done = run_cli("lint", "tests/fixtures/bad_specs/unknown_schedule_asset.yaml")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "tests/fixtures/bad_specs/unknown_schedule_asset.yaml:7:5: schedule: no spec produces Asset "
        "'lake.mirror.shop.public.ordrs', so this DAG would never run; did you mean 'lake.mirror.shop.public.orders'?",
        "dagfoundry lint: 1 spec(s) checked, 0 valid; 1 error(s) in 1 file(s)",
    ]
