"""Lake compaction: small files rewritten by Spark, verified, and published atomically.

Standard library only at import time (DAG factories import it while parsing).
"""

from __future__ import annotations

from dagfoundry.compaction.settings import CompactionConfigError, CompactionSettings
from dagfoundry.compaction.steps import (
    cleanup_step,
    new_version,
    plan_step,
    publish_step,
    report_step,
    rollback_step,
)

__all__ = [
    "CompactionConfigError",
    "CompactionSettings",
    "cleanup_step",
    "new_version",
    "plan_step",
    "publish_step",
    "report_step",
    "rollback_step",
]
