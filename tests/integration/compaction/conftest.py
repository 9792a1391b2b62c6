"""Fixtures for the compaction integration tests (helpers live in ``small_files.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def spark_available() -> None:
    """Fail (never skip) with a clear message when spark-submit or Java is missing."""
    import shutil
    import sys

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "spark-submit").exists() and shutil.which("spark-submit") is None:
        pytest.fail("spark-submit not found beside the venv's python nor on PATH: install pyspark in the venv")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("Java not found (no java on PATH, no JAVA_HOME): Spark local mode needs Java 17")
