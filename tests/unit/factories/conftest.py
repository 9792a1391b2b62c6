"""Fixtures of the factory tests: a spec loaded from YAML text as users write it, and a task's upstream ids.

They are fixtures, not importable functions: several ``conftest.py`` files share that module
name, so ``from conftest import ...`` would resolve to whichever pytest imported last.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dagfoundry.specs.loading import LoadedSpec, SpecLoader


@pytest.fixture
def load(tmp_path: Path) -> Callable[[str], LoadedSpec]:
    """Return a function that writes YAML text to ``spec.yaml`` in ``tmp_path`` and loads it."""

    def load_spec(text: str) -> LoadedSpec:
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        return SpecLoader(tmp_path, environ={}).load_file(path)

    return load_spec


@pytest.fixture
def upstream() -> Callable[[Any, str], set[str]]:
    """Return a function giving the ids of the tasks directly upstream of a task in a DAG."""

    def upstream_task_ids(dag: Any, task_id: str) -> set[str]:
        return set(dag.get_task(task_id).upstream_task_ids)

    return upstream_task_ids
