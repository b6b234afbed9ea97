"""Named crash points for tests: ``TRACELAKE_FAILPOINT=<name>`` makes the process SIGKILL itself there.

Crash tests use them to land a kill exactly in the narrow windows random timing rarely hits (between a
block's data and its ``meta.json``, between ``meta.json`` and the WAL cleanup). Unset, a hit is one
string comparison.
"""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("TRACELAKE_FAILPOINT", "")


def hit(name: str) -> None:
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
