"""The compiled OTLP decoder: one C pass over the wire bytes straight into ``RawSpans`` buffers.

Importing this module raises ``ImportError`` when the extension was not built; ``decoder`` then falls
back to ``pydecode``.
"""

from __future__ import annotations

from tracelake.codec import _otlpdecode
from tracelake.codec.raw import DEDICATED, FIXED_COLUMNS, VAR_COLUMNS, DedicatedSpec, RawSpans

if (
    tuple(_otlpdecode.VAR_COLUMNS) != VAR_COLUMNS
    or tuple(_otlpdecode.FIXED_COLUMNS) != tuple(FIXED_COLUMNS)
    or getattr(_otlpdecode, "MAX_DEDICATED", 0) < len(DEDICATED)
):  # a stale build of the extension: refuse it rather than mislabel columns
    raise ImportError("tracelake.codec._otlpdecode does not match raw.py's columns; rebuild it")

_FIXED_NAMES = tuple(FIXED_COLUMNS)
_DEFAULT_KEYS = tuple((key, attr_type) for key, _, attr_type in DEDICATED)  # built once, not per call


def decode_request_c(data: bytes, dedicated: DedicatedSpec = DEDICATED) -> RawSpans:
    """Decode a serialized ``ExportTraceServiceRequest`` (or ``TracesData``) into raw columns.

    Accepts any contiguous bytes-like object. Raises ``ValueError("malformed OTLP protobuf at byte N:
    ...")`` when the wire data is malformed. ``dedicated`` exists for tests (``()`` extracts nothing).
    """
    keys = _DEFAULT_KEYS if dedicated is DEDICATED else tuple((k, t) for k, _, t in dedicated)
    n_spans, n_attrs, var, fixed, resources, resource_urls, scopes, scope_urls, columns = _otlpdecode.decode(
        data, keys
    )
    return RawSpans(
        n_spans=n_spans,
        n_attrs=n_attrs,
        var=dict(zip(VAR_COLUMNS, var, strict=True)),
        fixed=dict(zip(_FIXED_NAMES, fixed, strict=True)),
        resources=resources,
        resource_schema_urls=resource_urls,
        scopes=scopes,
        scope_schema_urls=scope_urls,
        dedicated={column: bufs for (_, column, _), bufs in zip(dedicated, columns, strict=True)},
    )
