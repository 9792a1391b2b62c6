from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dagfoundry.errors import SpecErrors
from dagfoundry.specs.loading import SpecLoader, find_spec_files

GOOD = Path(__file__).resolve().parents[2] / "fixtures" / "good_specs"


def test_nearest_defaults_win_and_the_spec_wins_over_all():
    loader = SpecLoader(GOOD, environ={})
    spec = loader.load_file(GOOD / "team_a" / "orders_chain.yaml").spec
    assert spec.owner == "team-a"  # folder defaults over root defaults
    assert spec.retry_delay == timedelta(minutes=10)  # folder defaults
    assert spec.retries == 1  # the spec over both
    assert spec.tags == ("from-root",)  # root defaults
    assert spec.alerts.email == ("oncall@example.com",)


def test_root_defaults_apply_to_specs_at_the_root():
    spec = SpecLoader(GOOD, environ={}).load_file(GOOD / "customers_chain.yaml").spec
    assert spec.owner == "customers-team"
    assert spec.retries == 3
    assert spec.schedule == ("crm.customers_exported",)


def test_error_in_defaults_points_at_the_defaults_file(tmp_path):
    (tmp_path / "defaults.yaml").write_text("owner: x\nretries: -2\n")
    (tmp_path / "a.yaml").write_text("kind: test_chain\nname: a\nsteps: [s]\n")
    with pytest.raises(SpecErrors) as caught:
        SpecLoader(tmp_path, environ={}).load_file(tmp_path / "a.yaml")
    (error,) = caught.value.errors
    assert error.path.endswith("defaults.yaml") and error.line == 2 and error.key == "retries"
    assert "while validating" in error.message and "a.yaml" in error.message


def test_defaults_cannot_set_the_name(tmp_path):
    (tmp_path / "defaults.yaml").write_text("name: shared\n")
    (tmp_path / "a.yaml").write_text("kind: test_chain\nname: a\nsteps: [s]\n")
    result = SpecLoader(tmp_path, environ={}).load_all([tmp_path / "a.yaml"])
    assert [e.key for e in result.errors] == ["name"]
    assert "cannot have a default" in result.errors[0].message


def test_a_broken_spec_never_hides_a_valid_one_and_duplicates_name_both_files(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: test_chain\nname: same\nsteps: [s]\n")
    (tmp_path / "b.yaml").write_text("kind: test_chain\nname: same\nsteps: [t]\n")
    (tmp_path / "c.yaml").write_text("kind: test_chain\nname: broken\nsteps: []\n")
    (tmp_path / "d.yaml").write_text("kind: test_chain\nname: fine\nsteps: [u]\n")
    result = SpecLoader(tmp_path, environ={}).load_all(find_spec_files(tmp_path))
    assert sorted(s.spec.name for s in result.specs) == ["fine", "same"]
    rendered = sorted(e.render() for e in result.errors)
    assert len(rendered) == 2
    assert "b.yaml:2:1: name: 'same' is already the name of" in rendered[0] and "a.yaml:2" in rendered[0]
    assert "c.yaml:3:1: steps:" in rendered[1]


def test_spec_files_are_found_in_stable_order_without_defaults_or_hidden_files(tmp_path):
    for name in ["b.yaml", "a.yml", "defaults.yaml", "_draft.yaml", "notes.txt", "z/c.yaml", ".hidden/d.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    assert [p.relative_to(tmp_path).as_posix() for p in find_spec_files(tmp_path)] == ["a.yml", "b.yaml", "z/c.yaml"]


def test_kind_sections_of_defaults_apply_to_their_kind_only(tmp_path):
    (tmp_path / "defaults.yaml").write_text(
        "owner: shared-team\nkinds:\n  test_chain:\n    threshold: 7\n    owner: chain-team\n"
        "  lake_compaction:\n    min_small_files: 9\n"
    )
    (tmp_path / "chain.yaml").write_text("kind: test_chain\nname: chain\nsteps: [s]\n")
    (tmp_path / "compaction.yaml").write_text("kind: lake_compaction\nname: compaction\ntables: [events/a]\n")
    result = SpecLoader(tmp_path, environ={}).load_all(find_spec_files(tmp_path))
    assert result.errors == []
    chain, compaction = (s.spec for s in result.specs)
    assert (chain.threshold, chain.owner) == (7, "chain-team")
    assert (compaction.min_small_files, compaction.owner) == (9, "shared-team")


def test_a_kind_section_error_points_into_the_defaults_file(tmp_path):
    (tmp_path / "defaults.yaml").write_text("kinds:\n  test_chain:\n    threshold: -1\n  cdc_ingest: {}\n")
    (tmp_path / "chain.yaml").write_text("kind: test_chain\nname: chain\nsteps: [s]\n")
    result = SpecLoader(tmp_path, environ={}).load_all(find_spec_files(tmp_path))
    assert [e.render().split(": ", 1)[0] + ": " + e.key for e in result.errors] == [
        f"{tmp_path.name}/defaults.yaml:4:3: kinds.cdc_ingest"
    ]
    (tmp_path / "defaults.yaml").write_text("kinds:\n  test_chain:\n    threshold: -1\n")
    (error,) = SpecLoader(tmp_path, environ={}).load_all(find_spec_files(tmp_path)).errors
    assert (error.path, error.line, error.key) == (f"{tmp_path.name}/defaults.yaml", 3, "threshold")
