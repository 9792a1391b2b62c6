"""Deployment settings read at run time from the environment (never at parse time in a way that matters).

- ``DAGFOUNDRY_LAKE_ROOT``: the lake's root folder (default: ``lake/`` in the project).
- ``DAGFOUNDRY_CONFIG_DIR``: where specs live (see :mod:`dagfoundry.specs.loading`).
- ``DAGFOUNDRY_KIND_MODULES``: extra modules registering kinds (see :mod:`dagfoundry.registry`).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAKE_ROOT_ENV = "DAGFOUNDRY_LAKE_ROOT"


def lake_root() -> Path:
    """Return the lake root: ``$DAGFOUNDRY_LAKE_ROOT`` or ``<project>/lake``."""
    return Path(os.environ.get(LAKE_ROOT_ENV) or PROJECT_ROOT / "lake")
