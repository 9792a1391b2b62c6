"""Each file of the bad-spec corpus says, in its first line, the error it must produce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dagfoundry.specs.loading import SpecLoader, find_spec_files

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bad_specs"
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S+) \| (.+)$")


def _expectations():
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        text = path.read_bytes().decode("utf-8", errors="replace")  # the corpus holds a non-UTF-8 file
        match = EXPECT.match(text.splitlines()[0] if text else "")
        if match:
            line, column, key, message = match.groups()
            cases.append(pytest.param(path, int(line), int(column), "" if key == "-" else key, message, id=path.stem))
    return cases


@pytest.fixture(scope="module")
def corpus_result():
    return SpecLoader(CORPUS, environ={}).load_all(find_spec_files(CORPUS))


def test_the_corpus_is_large_enough():
    assert len(_expectations()) >= 25


@pytest.mark.parametrize(("path", "line", "column", "key", "message"), _expectations())
def test_each_broken_spec_gives_one_precise_error(corpus_result, path, line, column, key, message):
    errors = [e for e in corpus_result.errors if Path(e.path).name == path.name]
    assert len(errors) == 1, [e.render() for e in errors]
    (error,) = errors
    assert (error.line, error.column, error.key) == (line, column, key), error.render()
    assert message in error.message, error.render()


def test_only_the_valid_spec_of_the_corpus_loads(corpus_result):
    assert [s.spec.name for s in corpus_result.specs] == ["duplicated", "shared_source_a"]
