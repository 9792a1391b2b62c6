"""Named crash points for fault-injection tests, armed through environment variables.

Each step that publishes to the lake has its own variable (compaction:
``DAGFOUNDRY_COMPACTION_FAILPOINT``, CDC mirror: ``DAGFOUNDRY_CDC_MIRROR_FAILPOINT``) set to
``<point>`` or ``<point>@<key>``; reaching that point (for that key) kills the process with
SIGKILL: no ``finally`` blocks, no atexit, exactly like a lost worker. Unset, a check costs
one environment lookup.
"""

from __future__ import annotations

import os
import signal


def reach(env_var: str, point: str, key: str) -> None:
    """Kill this process if ``env_var`` arms the fail point ``point`` for ``key`` (or for any key)."""
    armed = os.environ.get(env_var)
    if not armed:
        return
    name, _, only = armed.partition("@")
    if name == point and (not only or only == key):
        os.kill(os.getpid(), signal.SIGKILL)
