"""Unreadable files, one resolution of defaults for a file and a folder, lint without Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dagfoundry.specs.documents import MAX_SPEC_BYTES
from dagfoundry.specs.loading import SpecLoader, config_root_for, find_spec_files

ROOT = Path(__file__).resolve().parents[3]
GOOD = "kind: test_chain\nname: {name}\nsteps: [s]\n"


def _load_folder(folder: Path):
    return SpecLoader(folder, environ={}).load_all(find_spec_files(folder))


def test_each_unreadable_file_is_one_located_error_and_the_others_still_load(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD.format(name="good"))
    (tmp_path / "latin1.yaml").write_bytes(b"kind: test_chain\nname: latin\ndescription: caf\xe9\n")
    (tmp_path / "huge.yaml").write_text(GOOD.format(name="huge") + "# " + "x" * MAX_SPEC_BYTES + "\n")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    result = _load_folder(tmp_path)
    assert [s.spec.name for s in result.specs] == ["good"]
    by_file = {Path(e.path).name: e for e in result.errors}
    assert sorted(by_file) == ["dangling.yaml", "huge.yaml", "latin1.yaml"]
    assert (by_file["latin1.yaml"].line, by_file["latin1.yaml"].column) == (3, 17)
    assert "byte 0xe9 is not UTF-8" in by_file["latin1.yaml"].message
    assert "larger than 1024 KiB" in by_file["huge.yaml"].message
    assert "cannot be read" in by_file["dangling.yaml"].message and by_file["dangling.yaml"].line == 1


def test_a_broken_defaults_file_is_one_error_however_many_specs_it_covers(tmp_path):
    (tmp_path / "defaults.yaml").write_bytes(b"owner: \xff\n")
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(GOOD.format(name=name))
    result = _load_folder(tmp_path)
    assert [e.render() for e in result.errors] == [f"{tmp_path.name}/defaults.yaml:1:8: byte 0xff is not UTF-8; save the file as UTF-8"]


def test_a_file_and_its_folder_find_the_same_config_root(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGFOUNDRY_CONFIG_DIR", raising=False)
    project = tmp_path / "project"
    (project / "configs" / "team" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "configs" / "defaults.yaml").write_text("owner: root-team\n")
    spec = project / "configs" / "team" / "deep" / "a.yaml"
    spec.write_text(GOOD.format(name="a"))
    assert config_root_for(spec) == config_root_for(spec.parent) == config_root_for(project / "configs") == project / "configs"
    monkeypatch.setenv("DAGFOUNDRY_CONFIG_DIR", str(project / "configs" / "team"))
    assert config_root_for(spec) == project / "configs" / "team"


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    env.pop("DAGFOUNDRY_KIND_MODULES", None)
    env.pop("DAGFOUNDRY_CONFIG_DIR", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_lint_prints_only_its_findings_and_never_imports_airflow():
    done = run_cli("-m", "dagfoundry", "lint", "dag_configs")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["dagfoundry lint: 5 spec(s) checked, 5 valid; ok"]
    probe = (
        "import json, sys\nfrom dagfoundry.cli import main\nstatus = main(['lint', 'dag_configs'])\n"
        "print(json.dumps([status, sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'dagfoundry') "
        "and (m.startswith('airflow') or m.startswith('dagfoundry.factories')))]))\n"
    )
    done = run_cli("-c", probe)
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []]


def test_a_file_and_its_folder_get_the_same_defaults_and_paths_as_typed(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    configs = tmp_path / "configs"
    (configs / "team").mkdir(parents=True)
    (configs / "defaults.yaml").write_text("retries: -1\n")
    (configs / "team" / "a.yaml").write_text("kind: lake_compaction\nname: a\ntables: [events/a]\n")
    by_file = run_cli("-m", "dagfoundry", "lint", "configs/team/a.yaml", cwd=tmp_path)
    by_folder = run_cli("-m", "dagfoundry", "lint", "configs", cwd=tmp_path)
    expected = "configs/defaults.yaml:1:1: retries: Input should be greater than or equal to 0, found -1"
    for done in (by_file, by_folder):
        assert done.returncode == 1
        assert done.stdout.splitlines()[0].startswith(expected), done.stdout
    # From inside the tree the root lies above the working directory: paths are printed absolute.
    from_inside = run_cli("-m", "dagfoundry", "lint", "a.yaml", cwd=configs / "team")
    assert from_inside.stdout.startswith(f"{configs.resolve() / 'defaults.yaml'}:1:1: retries:"), from_inside.stdout
