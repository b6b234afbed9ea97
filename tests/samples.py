"""Where Tempo's captured answers (``shared/tempo-api-samples/``) are: beside the checkout (as CI lays
it out), or named by ``TRACELAKE_SHARED_DIR``. Missing samples fail the tests that need them loudly,
never skip them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_CANDIDATES = [
    os.environ.get("TRACELAKE_SHARED_DIR", ""),
    str(Path(__file__).resolve().parents[1].parent / "shared"),
    "/work/shared",
]


def tempo_samples() -> Path:
    for candidate in filter(None, _CANDIDATES):
        samples = Path(candidate) / "tempo-api-samples"
        if samples.is_dir():
            return samples
    pytest.fail("Tempo's samples not found: set TRACELAKE_SHARED_DIR to the shared/ folder", pytrace=False)
