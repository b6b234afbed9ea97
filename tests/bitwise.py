"""Comparing Arrow values as tests mean it: floats by bit pattern (NaN equals NaN, -0.0 differs from 0.0)."""

from __future__ import annotations

import struct


def bits(value):
    """A Python value (nested lists and dicts too) with floats as their bit patterns."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, dict):
        return {k: bits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [bits(v) for v in value]
    return value
