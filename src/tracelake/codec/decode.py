"""OTLP protobuf bytes -> the span table: the entry point every writer of spans uses."""

from __future__ import annotations

from tracelake.codec.assemble import DecodedSpans, assemble
from tracelake.errors import InvalidInputError


def _raw_decoder():
    try:
        from tracelake.codec.decoder import decode_request_raw
    except ImportError:  # the compiled decoder's wrapper is not there: use the reference
        from tracelake.codec.pydecode import decode_request_py as decode_request_raw
    return decode_request_raw


_decode_raw = _raw_decoder()


def decode_otlp(data: bytes) -> DecodedSpans:
    """Decode a serialized ``ExportTraceServiceRequest``/``TracesData`` into validated span rows."""
    try:
        raw = _decode_raw(data)
    except (ValueError, RuntimeError) as exc:  # malformed wire data, from either decoder
        raise InvalidInputError(f"undecodable OTLP protobuf: {exc}") from exc
    return assemble(raw)
