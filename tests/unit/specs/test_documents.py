from __future__ import annotations

import pytest

from dagfoundry.errors import SpecErrors
from dagfoundry.specs.documents import format_key_path, read_document


def test_positions_point_at_keys_and_list_items():
    text = "kind: k\nname: n\ntables:\n  - name: a\n    primary_key: [id, ts]\n"
    document = read_document("spec.yaml", text, environ={})
    assert document.positions[("tables",)].line == 3
    assert document.positions[("tables", 0, "primary_key")].line == 5
    assert document.positions[("tables", 0, "primary_key", 1)].column == 23
    assert document.position_of(("tables", 0, "missing_key")).line == 4


def test_interpolation_uses_environment_then_default_and_keeps_the_raw_text():
    text = "a: ${USER_NAME}\nb: x-${MISSING:-fallback}-y\nc: plain\n"
    document = read_document("spec.yaml", text, environ={"USER_NAME": "ada"})
    assert document.data == {"a": "ada", "b": "x-fallback-y", "c": "plain"}
    assert document.raw_scalars == {("a",): "${USER_NAME}", ("b",): "x-${MISSING:-fallback}-y"}


def test_undefined_variable_is_located():
    with pytest.raises(SpecErrors) as caught:
        read_document("spec.yaml", "kind: k\nowner: ${NOPE}\n", environ={})
    (error,) = caught.value.errors
    assert (error.line, error.column, error.key) == (2, 1, "owner")
    assert "'NOPE' is not set" in error.message


def test_interpolation_happens_only_where_written():
    document = read_document("spec.yaml", "a: $HOME\nb: '$${X}'\n", environ={"X": "1", "HOME": "/root"})
    assert document.data["a"] == "$HOME"


def test_every_problem_of_a_file_is_reported_at_once():
    text = "a: !!python/name:os.system\nb: 1\nb: 2\nc: ${UNSET_ONE}\n"
    with pytest.raises(SpecErrors) as caught:
        read_document("spec.yaml", text, environ={})
    assert [(e.line, e.key) for e in caught.value.errors] == [(1, "a"), (3, "b"), (4, "c")]


def test_format_key_path():
    assert format_key_path(("tables", 2, "primary_key")) == "tables[2].primary_key"
    assert format_key_path(()) == ""
