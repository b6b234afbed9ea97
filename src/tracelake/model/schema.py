"""The flat span table: one row per span, the shape every part of tracelake agrees on.

Why this layout (measured in docs/design.md §3): flat rows sorted by trace id compress to ~50 B/span with
zstd, and pyarrow, DuckDB or Polars read them without our code. What is queried often has a column of its
own; what must only round-trip exactly is stored as the OTLP wire bytes it arrived in:

* ``resource`` and ``scope`` hold the serialized ``Resource``/``InstrumentationScope`` (dictionary
  encoded: one copy per distinct value in a row group, an index per span);
* ``events`` and ``links`` hold the span's own wire records (fields 11 and 13 of ``Span``), which parse
  straight back into a ``Span``;
* ``attributes`` is a typed list; an attribute with a dedicated column leaves a placeholder entry
  (type ``DEDICATED``) so the original order survives.
"""

from __future__ import annotations

from enum import IntEnum

import pyarrow as pa


class AttrType(IntEnum):
    """Which field of an ``attributes`` entry holds the value."""

    EMPTY = 0  # KeyValue without a value, or an AnyValue with no field set
    STRING = 1  # str
    BOOL = 2  # int (0/1)
    INT = 3  # int
    DOUBLE = 4  # double
    BYTES = 5  # bytes
    ARRAY = 6  # bytes: serialized ArrayValue
    KVLIST = 7  # bytes: serialized KeyValueList
    DEDICATED = 8  # value lives in the dedicated column for this key


ATTRIBUTE_TYPE = pa.struct(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("type", pa.uint8(), nullable=False),
        pa.field("str", pa.string(), nullable=False),
        pa.field("int", pa.int64(), nullable=False),
        pa.field("double", pa.float64(), nullable=False),
        pa.field("bytes", pa.binary(), nullable=False),
    ]
)

# Span attributes with a column of their own: (attribute key, column name, attribute type).
# An attribute moves to its column only when it has that type; otherwise it stays generic.
DEDICATED_SPAN_ATTRIBUTES: tuple[tuple[str, str, AttrType], ...] = (
    ("http.method", "http_method", AttrType.STRING),
    ("http.request.method", "http_request_method", AttrType.STRING),
    ("http.status_code", "http_status_code", AttrType.INT),
    ("http.response.status_code", "http_response_status_code", AttrType.INT),
    ("http.route", "http_route", AttrType.STRING),
    ("http.url", "http_url", AttrType.STRING),
    ("url.full", "url_full", AttrType.STRING),
    ("db.system", "db_system", AttrType.STRING),
    ("peer.service", "peer_service", AttrType.STRING),
    ("rpc.method", "rpc_method", AttrType.STRING),
)

# Resource attributes copied into columns for search (the resource bytes stay the source of truth).
DEDICATED_RESOURCE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("service.name", "service_name"),
    ("k8s.namespace.name", "k8s_namespace_name"),
    ("k8s.pod.name", "k8s_pod_name"),
    ("deployment.environment", "deployment_environment"),
)

_ARROW_TYPE_OF = {AttrType.STRING: pa.string(), AttrType.INT: pa.int64()}
DICT_BINARY = pa.dictionary(pa.int32(), pa.binary())
DICT_STRING = pa.dictionary(pa.int32(), pa.string())

SPAN_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.binary(16), nullable=False),
        pa.field("span_id", pa.binary(8), nullable=False),
        pa.field("parent_span_id", pa.binary(), nullable=False),
        pa.field("trace_state", pa.string(), nullable=False),
        pa.field("flags", pa.uint32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.int32(), nullable=False),
        pa.field("start_time_unix_nano", pa.uint64(), nullable=False),
        pa.field("end_time_unix_nano", pa.uint64(), nullable=False),
        pa.field("status_code", pa.int32(), nullable=False),
        pa.field("status_message", pa.string(), nullable=False),
        pa.field("dropped_attributes_count", pa.uint32(), nullable=False),
        pa.field("dropped_events_count", pa.uint32(), nullable=False),
        pa.field("dropped_links_count", pa.uint32(), nullable=False),
        pa.field("attributes", pa.list_(pa.field("item", ATTRIBUTE_TYPE, nullable=False))),
        pa.field("events", pa.binary(), nullable=False),
        pa.field("links", pa.binary(), nullable=False),
        pa.field("resource", DICT_BINARY, nullable=False),
        pa.field("resource_schema_url", DICT_STRING, nullable=False),
        pa.field("scope", DICT_BINARY, nullable=False),
        pa.field("scope_schema_url", DICT_STRING, nullable=False),
        pa.field("scope_name", DICT_STRING, nullable=False),
        pa.field("scope_version", DICT_STRING, nullable=False),
        *(pa.field(col, DICT_STRING) for _, col in DEDICATED_RESOURCE_ATTRIBUTES),
        *(pa.field(col, _ARROW_TYPE_OF[t]) for _, col, t in DEDICATED_SPAN_ATTRIBUTES),
    ]
)

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
