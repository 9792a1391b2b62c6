"""Named crash points for fault-injection tests.

Set ``DAGFOUNDRY_COMPACTION_FAILPOINT`` to ``<point>`` or ``<point>@<table>/<partition>``
and the process kills itself with SIGKILL when it reaches that point (for that partition):
no ``finally`` blocks, no atexit, exactly like a lost worker (the mechanism is
:mod:`dagfoundry.lake.failpoints`). Points: ``after_write``, ``after_verify``,
``during_publish`` (late files linked and marker written, before the exchange),
``after_exchange`` (the exchange done, the replaced directory not yet moved to the trash).
"""

from __future__ import annotations

from dagfoundry.lake import failpoints

ENV_VAR = "DAGFOUNDRY_COMPACTION_FAILPOINT"
POINTS = ("after_write", "after_verify", "during_publish", "after_exchange")


def reach(point: str, key: str) -> None:
    """Kill this process if the fail point ``point`` is armed for partition ``key``."""
    failpoints.reach(ENV_VAR, point, key)
