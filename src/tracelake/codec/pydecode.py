"""Pure-Python OTLP decoder: the reference the compiled decoder must match, and its fallback.

It parses with protobuf (upb) and loops per span and per attribute, so it is an order of magnitude
slower than ``_otlpdecode``; it exists so tracelake works where the extension could not be built.
"""

from __future__ import annotations

from array import array

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.codec.raw import DEDICATED, FIXED_COLUMNS, VAR_COLUMNS, DedicatedSpec, RawSpans
from tracelake.model.schema import AttrType
from tracelake.otlp.wire import len_field

_SPAN_EVENTS_FIELD = 11
_SPAN_LINKS_FIELD = 13
_TYPECODES = {"<u4": "I", "<i4": "i", "<u8": "Q", "<i8": "q", "<f8": "d", "u1": "B"}


def _records(field_number: int, messages) -> bytes:
    """Re-frame repeated sub-messages as the wire records a Span would hold."""
    return b"".join(len_field(field_number, m.SerializeToString(deterministic=True)) for m in messages)


class _Var:
    __slots__ = ("chunks", "offsets", "size")

    def __init__(self) -> None:
        self.offsets = array("i", [0])
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, value: bytes) -> None:
        self.chunks.append(value)
        self.size += len(value)
        self.offsets.append(self.size)

    def buffers(self) -> tuple[bytes, bytes]:
        return self.offsets.tobytes(), b"".join(self.chunks)


class _Dedicated:
    """One dedicated column being filled: one value (or a null) per span, as the C decoder lays it out."""

    __slots__ = ("ints", "is_str", "present", "strs")

    def __init__(self, attr_type: int) -> None:
        self.is_str = attr_type == AttrType.STRING
        self.present: list[bool] = []
        self.strs = _Var()
        self.ints = array("q")

    def add(self, value: bytes | int | None) -> None:
        self.present.append(value is not None)
        if self.is_str:
            self.strs.add(b"" if value is None else value)
        else:
            self.ints.append(0 if value is None else value)

    def buffers(self) -> tuple[bytes, ...]:
        validity = np.packbits(np.array(self.present, dtype=bool), bitorder="little").tobytes()
        return (validity, *self.strs.buffers()) if self.is_str else (validity, self.ints.tobytes())


def decode_request_py(data: bytes, dedicated: DedicatedSpec = DEDICATED) -> RawSpans:
    """Decode a serialized ``ExportTraceServiceRequest`` (or ``TracesData``) into raw columns.

    ``dedicated`` exists for tests (``()`` extracts nothing).
    """
    request = ExportTraceServiceRequest.FromString(data)
    wanted = {key.decode(): (column, attr_type) for key, column, attr_type in dedicated}
    columns = {column: _Dedicated(attr_type) for _, column, attr_type in dedicated}
    var = {name: _Var() for name in VAR_COLUMNS if not name.startswith("attr_")}
    attr = {name: _Var() for name in ("attr_key", "attr_str", "attr_bytes")}
    fixed = {name: array(_TYPECODES[dt.str.lstrip("|")]) for name, dt in FIXED_COLUMNS.items()}
    fixed["attr_offsets"].append(0)
    resources: list[bytes] = []
    resource_urls: list[str] = []
    scopes: list[bytes] = []
    scope_urls: list[str] = []
    n_attrs = 0
    for rs in request.resource_spans:
        resource_index = len(resources)
        resources.append(rs.resource.SerializeToString(deterministic=True))
        resource_urls.append(rs.schema_url)
        for ss in rs.scope_spans:
            scope_index = len(scopes)
            scopes.append(ss.scope.SerializeToString(deterministic=True))
            scope_urls.append(ss.schema_url)
            for span in ss.spans:
                var["trace_id"].add(span.trace_id)
                var["span_id"].add(span.span_id)
                var["parent_span_id"].add(span.parent_span_id)
                var["trace_state"].add(span.trace_state.encode())
                var["name"].add(span.name.encode())
                var["status_message"].add(span.status.message.encode())
                var["events"].add(_records(_SPAN_EVENTS_FIELD, span.events))
                var["links"].add(_records(_SPAN_LINKS_FIELD, span.links))
                fixed["flags"].append(span.flags)
                fixed["kind"].append(span.kind)
                fixed["start_time_unix_nano"].append(span.start_time_unix_nano)
                fixed["end_time_unix_nano"].append(span.end_time_unix_nano)
                fixed["status_code"].append(span.status.code)
                fixed["dropped_attributes_count"].append(span.dropped_attributes_count)
                fixed["dropped_events_count"].append(span.dropped_events_count)
                fixed["dropped_links_count"].append(span.dropped_links_count)
                fixed["resource_index"].append(resource_index)
                fixed["scope_index"].append(scope_index)
                found: dict[str, bytes | int] = {}
                for kv in span.attributes:
                    _add_attribute(kv, attr, fixed, wanted, found)
                for column, values in columns.items():
                    values.add(found.get(column))
                n_attrs += len(span.attributes)
                fixed["attr_offsets"].append(n_attrs)
    var.update(attr)
    return RawSpans(
        n_spans=len(fixed["flags"]),
        n_attrs=n_attrs,
        var={name: v.buffers() for name, v in var.items()},
        fixed={name: a.tobytes() for name, a in fixed.items()},
        resources=resources,
        resource_schema_urls=resource_urls,
        scopes=scopes,
        scope_schema_urls=scope_urls,
        dedicated={column: values.buffers() for column, values in columns.items()},
    )


def _add_attribute(
    kv,
    attr: dict[str, _Var],
    fixed: dict[str, array],
    wanted: dict[str, tuple[str, int]],
    found: dict[str, bytes | int],
) -> None:
    """Append one attribute; a span's first of a dedicated key and type moves to ``found`` instead."""
    kind = kv.value.WhichOneof("value") if kv.HasField("value") else None
    text, integer, double, raw = b"", 0, 0.0, b""
    if kind == "string_value":
        code, text = AttrType.STRING, kv.value.string_value.encode()
    elif kind == "bool_value":
        code, integer = AttrType.BOOL, int(kv.value.bool_value)
    elif kind == "int_value":
        code, integer = AttrType.INT, kv.value.int_value
    elif kind == "double_value":
        code, double = AttrType.DOUBLE, kv.value.double_value
    elif kind == "bytes_value":
        code, raw = AttrType.BYTES, kv.value.bytes_value
    elif kind == "array_value":
        code, raw = AttrType.ARRAY, kv.value.array_value.SerializeToString(deterministic=True)
    elif kind == "kvlist_value":
        code, raw = AttrType.KVLIST, kv.value.kvlist_value.SerializeToString(deterministic=True)
    else:
        code = AttrType.EMPTY
    column, attr_type = wanted.get(kv.key, (None, None))
    if column is not None and code == attr_type and column not in found:
        found[column] = text if code == AttrType.STRING else integer
        code, text, integer = AttrType.DEDICATED, b"", 0
    attr["attr_key"].add(kv.key.encode())
    attr["attr_str"].add(text)
    attr["attr_bytes"].add(raw)
    fixed["attr_type"].append(code)
    fixed["attr_int"].append(integer)
    fixed["attr_double"].append(double)
