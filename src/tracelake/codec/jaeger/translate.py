"""Jaeger spans (thrift Batch or gRPC api_v2 Batch) -> an OTLP ``ExportTraceServiceRequest``.

Tempo receives Jaeger through the OpenTelemetry Collector's jaeger receiver, which converts with
pkg/translator/jaeger (``jaegerthrift_to_traces.go`` for thrift, ``jaegerproto_to_traces.go`` for
gRPC). Spans must come out of tracelake as they come out of Tempo, so these rules follow that code
(opentelemetry-collector-contrib, read at commits 638eb6d / 044d0ee) rule by rule:

Resource (both)
    ``serviceName`` -> ``service.name`` (only when non-empty), then every process tag with its type
    kept; ``hostname`` -> ``host.name`` unless ``host.name`` is already there; ``jaeger.version`` ->
    ``opencensus.exporterversion = "Jaeger-<version>"`` unless that key is already there. gRPC only: a
    process whose service name is ``OTLPResourceNoServiceName`` gives an empty resource.
Grouping
    thrift: one ResourceSpans for the batch, one ScopeSpans with an empty scope. gRPC: one
    ResourceSpans per distinct process (a span's own ``process`` overrides the batch's), and inside
    it one ScopeSpans per (scope name, version). A group with a process but no spans still yields a
    ResourceSpans (as the collector does). Spans equal to the zero value are dropped.
Ids and times
    trace id = traceIdHigh ++ traceIdLow, 8 bytes big-endian each (64-bit ids are zero-padded on the
    left); span ids 8 bytes big-endian; gRPC ids are 16 or 8 bytes (8 = low half), anything else is
    refused. thrift times are µs -> ns; end = start + duration.
Parent
    thrift: ``parentSpanId`` when non-zero; otherwise (and always for gRPC) the first CHILD_OF
    reference into the same trace, else the first FOLLOWS_FROM one into the same trace.
Attributes
    STRING/BOOL/LONG(INT64)/DOUBLE(FLOAT64)/BINARY -> string/bool/int/double/bytes; an unknown tag type
    becomes the string ``<Unknown Jaeger TagType "...">``. A repeated key keeps its last value.
Kind
    ``span.kind`` (client/server/producer/consumer/internal) -> kind, anything else UNSPECIFIED; the
    tag is removed either way.
Status (setInternalSpanStatus)
    ``error`` (bool) true -> ERROR, tag removed, message from ``otel.status_description`` (removed)
    or else ``http.status_message`` (kept). Otherwise ``otel.status_code`` OK/ERROR (any case) ->
    OK/ERROR, other values -> UNSET, message from ``otel.status_description`` (removed).
    ``otel.status_code`` is removed in both cases. With neither, ``http.status_code`` (int or decimal
    string) decides: 4xx -> ERROR for client spans, UNSET for server spans, otherwise 100..398 UNSET
    and everything else ERROR, with ``http.status_message`` as the message (kept).
Trace state (gRPC only)
    ``w3c.tracestate`` -> ``trace_state`` (tag removed); thrift leaves it as an attribute.
Scope (gRPC only)
    ``otel.scope.name`` / ``otel.scope.version`` tags -> the scope (tags removed; the version is only
    looked at when a name is there). When there is no ``otel.scope.name``, the older
    ``otel.library.name`` / ``otel.library.version`` pair (what collectors before the rename read) is
    used the same way. thrift leaves all of these as attributes, as Tempo 2.7.2 did.
Events
    each log -> an event at the log's timestamp; its fields -> attributes, except ``event`` which
    becomes the name (removed).
Links
    every reference except CHILD_OF references to the parent span id -> a link with
    ``opentracing.ref_type`` = ``child_of`` / ``follows_from`` (so a FOLLOWS_FROM parent is also a
    link, and extra CHILD_OF references become ``child_of`` links).

Deliberate differences: times are clamped to [0, 2^64) instead of wrapping like Go's unsigned
conversion (a negative Jaeger time would otherwise land in the year 2554 and stretch block time
ranges); an absent gRPC timestamp is 0 rather than Go's year 1; attribute order after a removal is
insertion order (pdata swaps the last attribute into the hole).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from tracelake.codec.jaeger import model
from tracelake.codec.jaeger.proto import (
    VALUE_BINARY,
    VALUE_BOOL,
    VALUE_FLOAT64,
    VALUE_INT64,
    VALUE_STRING,
    parse_post_spans_request,
)
from tracelake.errors import InvalidInputError
from tracelake.otlp.builder import scope_spans_for

Value = str | bool | int | float | bytes
Attrs = dict[str, Value]

_MASK64 = 0xFFFFFFFFFFFFFFFF
_NS_PER_US = 1000
_NS_PER_S = 1_000_000_000
_TRACE_ID = struct.Struct(">QQ")
_SPAN_ID = struct.Struct(">Q")

# Keys the translator reads (collector: tracetranslator, semconv and occonventions constants).
TAG_SPAN_KIND = "span.kind"
TAG_ERROR = "error"
TAG_HTTP_STATUS_CODE = "http.status_code"
TAG_HTTP_STATUS_MSG = "http.status_message"
TAG_STATUS_CODE = "otel.status_code"
TAG_STATUS_DESCRIPTION = "otel.status_description"
TAG_W3C_TRACESTATE = "w3c.tracestate"
TAG_SCOPE_NAME = "otel.scope.name"
TAG_SCOPE_VERSION = "otel.scope.version"
TAG_LIBRARY_NAME = "otel.library.name"
TAG_LIBRARY_VERSION = "otel.library.version"
TAG_HOSTNAME = "hostname"
TAG_JAEGER_VERSION = "jaeger.version"
ATTR_SERVICE_NAME = "service.name"
ATTR_HOST_NAME = "host.name"
ATTR_EXPORTER_VERSION = "opencensus.exporterversion"
ATTR_REF_TYPE = "opentracing.ref_type"
EVENT_NAME_FIELD = "event"
RESOURCE_NO_SERVICE_NAME = "OTLPResourceNoServiceName"

_SPAN_KINDS = {
    "client": trace_pb2.Span.SPAN_KIND_CLIENT,
    "server": trace_pb2.Span.SPAN_KIND_SERVER,
    "producer": trace_pb2.Span.SPAN_KIND_PRODUCER,
    "consumer": trace_pb2.Span.SPAN_KIND_CONSUMER,
    "internal": trace_pb2.Span.SPAN_KIND_INTERNAL,
}
_STATUS_UNSET = trace_pb2.Status.STATUS_CODE_UNSET
_STATUS_OK = trace_pb2.Status.STATUS_CODE_OK
_STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR

_DECIMAL = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt(s, 10, 0) accepts
_GO_ZERO_TIME_SECONDS = -62135596800  # time.Time{} as a protobuf Timestamp (what gogo writes for "unset")


# ==================================================================================================
# small helpers


def _as_str(value: Value) -> str:
    """pdata's ``Value.Str()``: the string, or "" for any other type."""
    return value if type(value) is str else ""


def _clamp_ns(ns: int) -> int:
    return 0 if ns < 0 else min(ns, _MASK64)


def _trace_id(high: int, low: int) -> bytes:
    return _TRACE_ID.pack(high & _MASK64, low & _MASK64)


def _span_id(value: int) -> bytes:
    return _SPAN_ID.pack(value & _MASK64)


def _put_attributes(dest: Any, attrs: Attrs) -> None:
    """Append ``attrs`` to a repeated OTLP ``KeyValue`` field, keeping each value's type."""
    for key, value in attrs.items():
        kv = dest.add()
        kv.key = key
        t = type(value)
        if t is str:
            kv.value.string_value = value
        elif t is bool:
            kv.value.bool_value = value
        elif t is int:
            kv.value.int_value = value
        elif t is float:
            kv.value.double_value = value
        else:
            kv.value.bytes_value = value


def _translate_resource(attrs: Attrs) -> None:
    """The collector's translateHostnameAttr and translateJaegerVersionAttr."""
    if TAG_HOSTNAME in attrs and ATTR_HOST_NAME not in attrs:
        attrs[ATTR_HOST_NAME] = attrs.pop(TAG_HOSTNAME)
    if TAG_JAEGER_VERSION in attrs and ATTR_EXPORTER_VERSION not in attrs:
        attrs[ATTR_EXPORTER_VERSION] = "Jaeger-" + _as_str(attrs.pop(TAG_JAEGER_VERSION))


def _http_status(value: Value) -> int | None:
    """The collector's codeFromAttr: an int, or a decimal string that fits an int64."""
    if type(value) is int:
        return value
    if type(value) is str and _DECIMAL.fullmatch(value):
        code = int(value)
        if -(2**63) <= code < 2**63:
            return code
    return None


def _status_from_http(code: int, kind: int) -> int:
    if 400 <= code < 500:
        if kind == trace_pb2.Span.SPAN_KIND_CLIENT:
            return _STATUS_ERROR
        if kind == trace_pb2.Span.SPAN_KIND_SERVER:
            return _STATUS_UNSET
    return _STATUS_UNSET if 100 <= code < 399 else _STATUS_ERROR


def _take_status(attrs: Attrs, kind: int) -> tuple[int, str] | None:
    """The collector's setInternalSpanStatus: the span status, removing the tags it consumed."""
    code = _STATUS_UNSET
    message = ""
    exists = False
    error = attrs.get(TAG_ERROR)
    if error is True:
        code = _STATUS_ERROR
        del attrs[TAG_ERROR]
        exists = True
        if TAG_STATUS_DESCRIPTION in attrs:
            message = _as_str(attrs.pop(TAG_STATUS_DESCRIPTION))
        elif TAG_HTTP_STATUS_MSG in attrs:
            message = _as_str(attrs[TAG_HTTP_STATUS_MSG])
    if TAG_STATUS_CODE in attrs:
        if not exists:
            # the error tag is the ultimate truth; otel.status_code only counts without it
            exists = True
            name = _as_str(attrs[TAG_STATUS_CODE]).upper()
            code = _STATUS_OK if name == "OK" else _STATUS_ERROR if name == "ERROR" else _STATUS_UNSET
            if TAG_STATUS_DESCRIPTION in attrs:
                message = _as_str(attrs.pop(TAG_STATUS_DESCRIPTION))
        del attrs[TAG_STATUS_CODE]
    elif not exists and TAG_HTTP_STATUS_CODE in attrs:
        http = _http_status(attrs[TAG_HTTP_STATUS_CODE])
        if http is not None:
            from_http = _status_from_http(http, kind)
            if from_http != _STATUS_UNSET:
                exists = True
                code = from_http
            if TAG_HTTP_STATUS_MSG in attrs:
                message = _as_str(attrs[TAG_HTTP_STATUS_MSG])
    return (code, message) if exists else None


def _fill_span(
    dest: Any,
    *,
    trace_id: bytes,
    span_id: int,
    parent_id: int,
    name: str,
    start_ns: int,
    end_ns: int,
    attrs: Attrs,
    logs: Iterable[tuple[int, Attrs]],
    refs: Iterable[tuple[int, int, int, int]],
    take_tracestate: bool,
) -> None:
    """Everything the two translators share once ids, times, tags and logs are plain values.

    ``refs`` are (ref type, trace id high, trace id low, span id).
    """
    dest.trace_id = trace_id
    dest.span_id = _span_id(span_id)
    if parent_id:
        dest.parent_span_id = _span_id(parent_id)
    dest.name = name
    dest.start_time_unix_nano = start_ns
    dest.end_time_unix_nano = end_ns

    kind = trace_pb2.Span.SPAN_KIND_UNSPECIFIED
    if TAG_SPAN_KIND in attrs:
        kind = _SPAN_KINDS.get(_as_str(attrs.pop(TAG_SPAN_KIND)), trace_pb2.Span.SPAN_KIND_UNSPECIFIED)
        dest.kind = kind
    status = _take_status(attrs, kind)
    if status is not None:
        dest.status.code = status[0]
        dest.status.message = status[1]
    if take_tracestate and TAG_W3C_TRACESTATE in attrs:
        dest.trace_state = _as_str(attrs.pop(TAG_W3C_TRACESTATE))
    _put_attributes(dest.attributes, attrs)

    for ts_ns, fields in logs:
        event = dest.events.add()
        event.time_unix_nano = ts_ns
        if EVENT_NAME_FIELD in fields:
            event.name = _as_str(fields.pop(EVENT_NAME_FIELD))
        _put_attributes(event.attributes, fields)

    for ref_type, high, low, ref_span in refs:
        if ref_type == model.CHILD_OF and (ref_span & _MASK64) == (parent_id & _MASK64):
            continue
        link = dest.links.add()
        link.trace_id = _trace_id(high, low)
        link.span_id = _span_id(ref_span)
        kv = link.attributes.add()
        kv.key = ATTR_REF_TYPE
        kv.value.string_value = "child_of" if ref_type == model.CHILD_OF else "follows_from"


def _parent_from_refs(refs: Iterable[tuple[int, int, int, int]], high: int, low: int) -> int:
    """The first CHILD_OF reference into the same trace, else the first FOLLOWS_FROM one, else 0."""
    follows_from: int | None = None
    for ref_type, ref_high, ref_low, ref_span in refs:
        if ref_high != high or ref_low != low:
            continue
        if ref_type == model.CHILD_OF:
            return ref_span
        if follows_from is None and ref_type == model.FOLLOWS_FROM:
            follows_from = ref_span
    return follows_from or 0


# ==================================================================================================
# thrift


def _thrift_value(tag: model.Tag) -> Value:
    t = tag.v_type
    if t == model.TAG_STRING:
        return tag.v_str if tag.v_str is not None else ""
    if t == model.TAG_BOOL:
        return tag.v_bool if tag.v_bool is not None else False
    if t == model.TAG_LONG:
        return tag.v_long if tag.v_long is not None else 0
    if t == model.TAG_DOUBLE:
        return tag.v_double if tag.v_double is not None else 0.0
    if t == model.TAG_BINARY:
        return tag.v_binary if tag.v_binary is not None else b""
    return '<Unknown Jaeger TagType "<UNSET>">'  # Go's %q of a TagType outside the enum


def _thrift_attrs(tags: list[model.Tag] | None, dest: Attrs | None = None) -> Attrs:
    attrs: Attrs = {} if dest is None else dest
    if tags:
        for tag in tags:
            attrs[tag.key] = _thrift_value(tag)
    return attrs


def _thrift_resource(process: model.Process) -> Attrs:
    attrs: Attrs = {}
    if process.service_name:
        attrs[ATTR_SERVICE_NAME] = process.service_name
    _thrift_attrs(process.tags, attrs)
    _translate_resource(attrs)
    return attrs


def _is_blank_thrift_span(span: model.Span) -> bool:
    return not (
        span.trace_id_low
        or span.trace_id_high
        or span.span_id
        or span.parent_span_id
        or span.operation_name
        or span.flags
        or span.start_time
        or span.duration
        or span.references is not None
        or span.tags is not None
        or span.logs is not None
        or span.incomplete is not None
    )


def _fill_thrift_span(dest: Any, span: model.Span) -> None:
    refs = [
        (ref.ref_type, ref.trace_id_high & _MASK64, ref.trace_id_low & _MASK64, ref.span_id & _MASK64)
        for ref in span.references or ()
    ]
    high = span.trace_id_high & _MASK64
    low = span.trace_id_low & _MASK64
    parent = span.parent_span_id & _MASK64 or _parent_from_refs(refs, high, low)
    start_us = span.start_time
    _fill_span(
        dest,
        trace_id=_TRACE_ID.pack(high, low),
        span_id=span.span_id,
        parent_id=parent,
        name=span.operation_name,
        start_ns=_clamp_ns(start_us * _NS_PER_US),
        end_ns=_clamp_ns((start_us + span.duration) * _NS_PER_US),
        attrs=_thrift_attrs(span.tags),
        logs=[(_clamp_ns(log.timestamp * _NS_PER_US), _thrift_attrs(log.fields)) for log in span.logs or ()],
        refs=refs,
        take_tracestate=False,
    )


def thrift_model_to_otlp(batch: model.Batch) -> ExportTraceServiceRequest:
    """A decoded jaeger.thrift ``Batch`` -> OTLP (the collector's ThriftToTraces)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _put_attributes(rs.resource.attributes, _thrift_resource(batch.process))
    if batch.spans:
        spans = rs.scope_spans.add().spans
        for span in batch.spans:
            if not _is_blank_thrift_span(span):
                _fill_thrift_span(spans.add(), span)
    return request


def thrift_batch_to_otlp(body: bytes) -> ExportTraceServiceRequest:
    """A jaeger.thrift ``Batch`` in TBinaryProtocol (HTTP POST /api/traces on :14268) -> OTLP."""
    return thrift_model_to_otlp(model.decode_batch(body, "binary"))


def agent_datagram_to_otlp(datagram: bytes, protocol: str) -> ExportTraceServiceRequest:
    """An ``Agent.emitBatch`` datagram -> OTLP.

    ``protocol`` is "compact" (UDP :6831, TCompactProtocol) or "binary" (UDP :6832, TBinaryProtocol).
    """
    if protocol not in ("compact", "binary"):
        raise InvalidInputError(f"unknown jaeger agent protocol {protocol!r}: expected 'compact' or 'binary'")
    return thrift_model_to_otlp(model.decode_emit_batch(datagram, protocol))


# ==================================================================================================
# gRPC (api_v2)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _proto_value(kv: Any) -> Value:
    t = kv.v_type
    if t == VALUE_STRING:
        return _text(kv.v_str)
    if t == VALUE_BOOL:
        return kv.v_bool
    if t == VALUE_INT64:
        return kv.v_int64
    if t == VALUE_FLOAT64:
        return kv.v_float64
    if t == VALUE_BINARY:
        return bytes(kv.v_binary)
    return f'<Unknown Jaeger TagType "{t}">'  # gogoproto's String() of an unknown enum value


def _proto_attrs(tags: Iterable[Any], dest: Attrs | None = None) -> Attrs:
    attrs: Attrs = {} if dest is None else dest
    for kv in tags:
        attrs[_text(kv.key)] = _proto_value(kv)
    return attrs


def _proto_trace_id(data: bytes, what: str) -> tuple[int, int]:
    n = len(data)
    if n == 16:
        return _TRACE_ID.unpack(data)
    if n == 8:
        return 0, _SPAN_ID.unpack(data)[0]
    if n == 0:
        return 0, 0
    raise InvalidInputError(f"invalid jaeger {what} trace_id: {n} bytes, expected 16 or 8")


def _proto_span_id(data: bytes, what: str) -> int:
    n = len(data)
    if n == 8:
        return _SPAN_ID.unpack(data)[0]
    if n == 0:
        return 0
    raise InvalidInputError(f"invalid jaeger {what} span_id: {n} bytes, expected 8")


def _timestamp_ns(ts: Any) -> int:
    return ts.seconds * _NS_PER_S + ts.nanos


def _proto_resource(process: Any | None) -> Attrs:
    attrs: Attrs = {}
    if process is None:
        return attrs
    service_name = _text(process.service_name)
    if service_name == RESOURCE_NO_SERVICE_NAME:
        return attrs
    if service_name:
        attrs[ATTR_SERVICE_NAME] = service_name
    _proto_attrs(process.tags, attrs)
    _translate_resource(attrs)
    return attrs


def _take_tag(tags: list[Any], key: bytes) -> str | None:
    """Remove the first tag called ``key`` and return its string value (the collector's getAndDeleteTag)."""
    for i, kv in enumerate(tags):
        if kv.key == key:
            del tags[i]
            return _text(kv.v_str)
    return None


def _scope_of(tags: list[Any]) -> tuple[str, str]:
    for name_key, version_key in (
        (TAG_SCOPE_NAME.encode(), TAG_SCOPE_VERSION.encode()),
        (TAG_LIBRARY_NAME.encode(), TAG_LIBRARY_VERSION.encode()),
    ):
        name = _take_tag(tags, name_key)
        if name is not None:
            return name, _take_tag(tags, version_key) or ""
    return "", ""


def _is_blank_proto_span(span: Any) -> bool:
    """The zero ``model.Span`` as gogoproto would send it (zero ids, Go's zero time, nothing else)."""
    if span.HasField("start_time"):
        st = span.start_time
        if not (st.nanos == 0 and st.seconds in (0, _GO_ZERO_TIME_SECONDS)):
            return False
    return not (
        any(span.trace_id)
        or any(span.span_id)
        or span.operation_name
        or len(span.references)
        or span.flags
        or span.duration.seconds
        or span.duration.nanos
        or len(span.tags)
        or len(span.logs)
        or span.HasField("process")
        or span.process_id
        or len(span.warnings)
    )


def _fill_proto_span(dest: Any, span: Any, tags: list[Any]) -> None:
    high, low = _proto_trace_id(span.trace_id, "span")
    refs = []
    for ref in span.references:
        ref_high, ref_low = _proto_trace_id(ref.trace_id, "reference")
        refs.append((ref.ref_type, ref_high, ref_low, _proto_span_id(ref.span_id, "reference")))
    start_ns = _timestamp_ns(span.start_time)
    _fill_span(
        dest,
        trace_id=_TRACE_ID.pack(high, low),
        span_id=_proto_span_id(span.span_id, "span"),
        parent_id=_parent_from_refs(refs, high, low),
        name=_text(span.operation_name),
        start_ns=_clamp_ns(start_ns),
        end_ns=_clamp_ns(start_ns + _timestamp_ns(span.duration)),
        attrs=_proto_attrs(tags),
        logs=[(_clamp_ns(_timestamp_ns(log.timestamp)), _proto_attrs(log.fields)) for log in span.logs],
        refs=refs,
        take_tracestate=True,
    )


def proto_batch_to_otlp(batch: Any) -> ExportTraceServiceRequest:
    """A parsed api_v2 ``Batch`` -> OTLP (the collector's ProtoToTraces, in first-seen order)."""
    # Regroup by process: each distinct process (the span's own, else the batch's) is one resource.
    batch_process = batch.process if batch.HasField("process") else None
    groups: dict[bytes | None, tuple[Any | None, list[Any]]] = {}

    def group_for(process: Any | None) -> list[Any]:
        key = None if process is None else process.SerializeToString(deterministic=True)
        if key not in groups:
            groups[key] = (process, [])
        return groups[key][1]

    batch_spans = group_for(batch_process)
    for span in batch.spans:
        if span.HasField("process"):
            group_for(span.process).append(span)
        else:
            batch_spans.append(span)

    request = ExportTraceServiceRequest()
    for process, spans in groups.values():
        if process is None and not spans:
            continue
        rs = request.resource_spans.add()
        _put_attributes(rs.resource.attributes, _proto_resource(process))
        by_scope: dict[tuple[str, str], Any] = {}
        for span in spans:
            if _is_blank_proto_span(span):
                continue
            tags = list(span.tags)
            _fill_proto_span(scope_spans_for(rs, by_scope, _scope_of(tags)).spans.add(), span, tags)
    return request


def grpc_post_spans_to_otlp(request: bytes) -> ExportTraceServiceRequest:
    """A serialized ``jaeger.api_v2.PostSpansRequest`` (gRPC CollectorService/PostSpans, :14250) -> OTLP."""
    parsed = parse_post_spans_request(request)
    return proto_batch_to_otlp(parsed.batch)
