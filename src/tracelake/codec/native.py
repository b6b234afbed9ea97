"""Whether the compiled codecs may be used: ``TRACELAKE_PURE_PYTHON=1`` in the environment (read at
import) makes every codec take its pure-Python path, as when the extensions could not be built."""

from __future__ import annotations

import os


def pure_python_forced() -> bool:
    return os.environ.get("TRACELAKE_PURE_PYTHON", "") not in ("", "0")
