"""Columns straight off the OTLP wire, before validation: the contract between decoders and assembly.

Two decoders fill a ``RawSpans``: a compiled one (``_otlpdecode``, a C walk over the protobuf bytes) and
a pure-Python fallback over the parsed message. Both hand back plain byte buffers so that turning them
into Arrow arrays is zero-copy and no Python object is made per span or per attribute on the fast path.

Buffers (little-endian): offsets are int32 arrays of n+1 entries into a data buffer ("var" columns);
``resources``/``scopes`` hold one entry per ``ResourceSpans``/``ScopeSpans`` message, and every span
points at its entry through ``resource_index``/``scope_index``.

Dedicated span attributes (``DEDICATED_SPAN_ATTRIBUTES``) are taken out while decoding, not afterwards,
because finding them columnar in Python was the largest Python cost of a request: a span's first
attribute with the key *and* the type goes to ``dedicated[column]`` and stays in the attribute columns as a
placeholder (type ``DEDICATED``, empty str, int 0) so the attribute order survives. Each dedicated entry
is Arrow-ready: ``(validity bitmap, offsets, data)`` for a STRING key, ``(validity bitmap, int64 values)``
for an INT key; the bitmap has bit i (LSB first) set when span i has a value, its padding bits zero; a
null's offsets repeat and its int is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracelake.model.schema import DEDICATED_SPAN_ATTRIBUTES

VAR_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "name",
    "status_message",
    "events",
    "links",
    "attr_key",
    "attr_str",
    "attr_bytes",
)
FIXED_COLUMNS: dict[str, np.dtype] = {
    "flags": np.dtype("<u4"),
    "kind": np.dtype("<i4"),
    "start_time_unix_nano": np.dtype("<u8"),
    "end_time_unix_nano": np.dtype("<u8"),
    "status_code": np.dtype("<i4"),
    "dropped_attributes_count": np.dtype("<u4"),
    "dropped_events_count": np.dtype("<u4"),
    "dropped_links_count": np.dtype("<u4"),
    "resource_index": np.dtype("<i4"),
    "scope_index": np.dtype("<i4"),
    "attr_offsets": np.dtype("<i4"),  # n+1 entries: span i owns attributes [off[i], off[i+1])
    "attr_type": np.dtype("u1"),
    "attr_int": np.dtype("<i8"),
    "attr_double": np.dtype("<f8"),
}

# (key bytes, column, AttrType code) of the dedicated span attributes, in the schema's order.
DedicatedSpec = tuple[tuple[bytes, str, int], ...]
DEDICATED: DedicatedSpec = tuple(
    (key.encode(), column, int(attr_type)) for key, column, attr_type in DEDICATED_SPAN_ATTRIBUTES
)


@dataclass
class RawSpans:
    n_spans: int
    n_attrs: int
    # name -> (offsets bytes, data bytes) for VAR_COLUMNS; name -> bytes for FIXED_COLUMNS
    var: dict[str, tuple[bytes, bytes]]
    fixed: dict[str, bytes]
    resources: list[bytes]
    resource_schema_urls: list[str]
    scopes: list[bytes]
    scope_schema_urls: list[str]
    # column -> (validity, offsets, data) for STRING keys, (validity, int64 values) for INT keys
    dedicated: dict[str, tuple[bytes, ...]]

    def array(self, name: str) -> np.ndarray:
        return np.frombuffer(self.fixed[name], dtype=FIXED_COLUMNS[name])

    def offsets(self, name: str) -> np.ndarray:
        return np.frombuffer(self.var[name][0], dtype="<i4")
