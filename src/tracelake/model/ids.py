"""Trace and span ids: parsing what users type, and viewing id columns as numpy matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tracelake.errors import InvalidTraceIDError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_trace_id(text: str) -> bytes:
    """16 bytes from 1–32 hex characters, left-padded with zeros as Tempo does (64-bit ids too)."""
    value = text.strip()
    bad = next((i for i, char in enumerate(value) if char not in _HEX_DIGITS), None)
    if bad is not None or not 0 < len(value) <= 32:
        reason = "not hex" if bad is not None else "too long" if value else "empty"
        raise InvalidTraceIDError(
            f"invalid trace id {text!r}: {reason} (expected 1 to 32 hex characters)",
            reason=reason,
            text=value,
            position=None if bad is None else bad + 1,
        )
    return bytes.fromhex(value.rjust(32, "0"))


def id_matrix(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A FixedSizeBinary column as an (n, width) uint8 matrix, without copying when possible."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    width = ids.type.byte_width
    buf = np.frombuffer(ids.buffers()[1], dtype=np.uint8)
    return buf[ids.offset * width : (ids.offset + len(ids)) * width].reshape(-1, width)


def id_words(ids: np.ndarray) -> np.ndarray:
    """An (n, 8k) id matrix as (n, k) uint64 words, native byte order: for moving and comparing ids,
    not for sorting them."""
    return np.ascontiguousarray(ids).view(np.uint64)


def trace_starts(ids: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that begin a new trace, for rows sorted by trace id (an (n, width) id
    matrix). Compared as 8-byte words, one column at a time: 6 µs per 5000 trace ids, against 70 for
    a byte-wise comparison reduced with ``any`` (this runs a few times per merge step and summary)."""
    new = np.ones(len(ids), dtype=bool)
    if len(ids) < 2:
        return new
    if ids.shape[1] % 8:
        new[1:] = (ids[1:] != ids[:-1]).any(axis=1)
        return new
    words = id_words(ids)
    changed = words[1:, 0] != words[:-1, 0]
    for column in range(1, words.shape[1]):
        changed |= words[1:, column] != words[:-1, column]
    new[1:] = changed
    return new
