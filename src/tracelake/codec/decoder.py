"""Picks the raw OTLP decoder: the compiled one when it is importable, else the pure-Python reference.

``TRACELAKE_PURE_PYTHON=1`` in the environment (read at import) forces the Python decoder. Both raise
``ValueError("malformed OTLP protobuf ...")`` on malformed wire data.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from tracelake.codec.native import pure_python_forced
from tracelake.codec.pydecode import decode_request_py
from tracelake.codec.raw import RawSpans

__all__ = ["DECODER_NAME", "decode_request_raw"]


def _decode_request_python(data: bytes) -> RawSpans:
    try:
        return decode_request_py(data)
    except DecodeError as exc:  # same error type as the compiled decoder
        raise ValueError(f"malformed OTLP protobuf: {exc}") from exc


def _choose():
    if pure_python_forced():
        return "python", _decode_request_python
    try:
        from tracelake.codec.cdecode import decode_request_c
    except ImportError:
        return "python", _decode_request_python
    return "c", decode_request_c


DECODER_NAME, _decode = _choose()


def decode_request_raw(data: bytes) -> RawSpans:
    """Decode a serialized ``ExportTraceServiceRequest`` (or ``TracesData``) into raw columns."""
    return _decode(data)
