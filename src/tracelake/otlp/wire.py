"""Protobuf wire-format writing helpers, for code that frames OTLP records without a message class."""

from __future__ import annotations

_U64 = (1 << 64) - 1
_SMALL = tuple(bytes([i]) for i in range(0x80))


def encode_varint(n: int) -> bytes:
    """Base-128 varint; negative int64/int32 values are written as 10-byte two's complement."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    n &= _U64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def len_field(field_number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): tag, length, payload."""
    return encode_varint(field_number << 3 | 2) + encode_varint(len(payload)) + payload
