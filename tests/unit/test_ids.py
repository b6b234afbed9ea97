from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tracelake.errors import InvalidTraceIDError
from tracelake.model.ids import parse_trace_id, trace_starts


@pytest.mark.parametrize(
    ("text", "hex_id"),
    [
        ("7ae894ed8dc75cf7baa1d32a77cc9488", "7ae894ed8dc75cf7baa1d32a77cc9488"),
        ("7AE894ED8DC75CF7BAA1D32A77CC9488", "7ae894ed8dc75cf7baa1d32a77cc9488"),
        ("baa1d32a77cc9488", "0000000000000000baa1d32a77cc9488"),
        ("1", "00000000000000000000000000000001"),
    ],
)
def test_ids_are_left_padded(text: str, hex_id: str) -> None:
    assert parse_trace_id(text).hex() == hex_id


@pytest.mark.parametrize(("text", "reason"), [("xyz", "not hex"), ("0" * 33, "too long"), ("", "empty")])
def test_bad_ids_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidTraceIDError, match=reason):
        parse_trace_id(text)


@given(
    width=st.sampled_from([16, 8, 3]),
    runs=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4)), max_size=30),
    step=st.sampled_from([1, 2]),
)
@example(width=16, runs=[(0, 2), (1, 1), (3, 1), (2, 2)], step=2)  # each word changing alone
def test_trace_starts_marks_each_change_of_id(width: int, runs: list[tuple[int, int]], step: int) -> None:
    # Runs of ids drawn from four values that differ from each other in the first or the last byte only.
    zeros = bytes(width - 1)
    values = [zeros + b"\x00", zeros + b"\x01", b"\x01" + zeros, b"\x02" + zeros]
    rows = [values[v] for v, length in runs for _ in range(length)]
    matrix = (
        np.frombuffer(b"".join(rows), np.uint8).reshape(-1, width) if rows else np.zeros((0, width), np.uint8)
    )
    matrix = np.repeat(matrix, step, axis=0)[::step]  # step 2: a strided view, not a contiguous array
    rows = [bytes(r) for r in matrix]
    expected = [i == 0 or rows[i] != rows[i - 1] for i in range(len(rows))]
    assert trace_starts(matrix).tolist() == expected
