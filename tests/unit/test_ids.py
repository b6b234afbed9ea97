from __future__ import annotations

import pytest

from tracelake.errors import InvalidTraceIDError
from tracelake.model.ids import parse_trace_id


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
