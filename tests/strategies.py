"""Hypothesis strategies for arbitrary valid OTLP trace data, and helpers to compare it.

The storage engine must give back every OTLP span field exactly, so these strategies reach into the
corners real SDKs rarely visit: the full int64/uint64/uint32 ranges, -0.0 and infinities, NaN, empty
and non-ASCII strings, unknown enum values, end before start, nested arrays/kvlists, attributes with
the "wrong" type under well-known keys (``http.status_code`` as a string), traces split across
resources.

What they deliberately do not generate:

* Present-but-empty singular messages (``span.status``, ``resource_spans.resource``, ``scope``, a
  KeyValue's ``value``) are left absent instead. proto3 JSON and our storage cannot tell the two apart,
  so a round trip could not preserve the difference. Empty values *inside* a oneof or a repeated field
  are meaningful and are generated: ``AnyValue(array_value=ArrayValue())`` (an empty array attribute),
  an empty AnyValue as an array element, ``string_value=""``.
* NaN is only the canonical quiet NaN (``float("nan")``), not arbitrary NaN payloads; compare with
  :func:`messages_equal`, which compares serialized bytes so NaN equals NaN.
* Invalid ids: trace ids are 16 non-zero bytes, span ids 8 non-zero bytes, parent ids empty or 8
  non-zero bytes; the decoder refuses anything else, and that is tested separately.
* Profile-only dictionary references (``KeyValue.key_strindex``, ``AnyValue.string_value_strindex``)
  and the development-status ``Resource.entity_refs``: trace SDKs never send them.

Requests stay small (at most a few dozen spans) so property tests run fast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from google.protobuf.message import Message
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

__all__ = [
    "COMMON_SPAN_KEYS",
    "any_values",
    "attribute_lists",
    "canonical_spans",
    "export_requests",
    "key_values",
    "messages_equal",
    "request_from_canonical",
    "span_ids",
    "spans",
    "trace_ids",
]

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)

# Keys our storage may give dedicated columns: generated often, sometimes with the wrong type.
COMMON_SPAN_KEYS: tuple[str, ...] = (
    "http.method",
    "http.request.method",
    "http.status_code",
    "http.response.status_code",
    "http.route",
    "http.url",
    "url.full",
    "db.system",
    "peer.service",
    "rpc.method",
    "service.name",
)


@functools.cache
def _texts(max_size: int = 20) -> SearchStrategy[str]:
    """Short strings, biased towards the empty string and ASCII but reaching all of Unicode."""
    return st.one_of(
        st.just(""), st.text(st.characters(codec="ascii"), max_size=max_size), st.text(max_size=max_size)
    )


@functools.cache
def _non_zero(size: int) -> SearchStrategy[bytes]:
    # Mapped rather than filtered: hypothesis favours zero bytes, so a filter would reject a lot.
    return st.binary(min_size=size, max_size=size).map(lambda b: b if any(b) else b[:-1] + b"\x01")


@functools.cache
def trace_ids() -> SearchStrategy[bytes]:
    """16 bytes, not all zero (an all-zero trace id is invalid and refused by the decoder)."""
    return _non_zero(16)


@functools.cache
def span_ids() -> SearchStrategy[bytes]:
    """8 bytes, not all zero."""
    return _non_zero(8)


# ----------------------------------------------------------------------------------------------
# Values and attributes


@functools.cache
def _doubles() -> SearchStrategy[float]:
    return st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))


@functools.cache
def _scalar_values() -> SearchStrategy[AnyValue]:
    return st.one_of(
        _texts(30).map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.one_of(INT64, st.sampled_from([0, -1, 2**63 - 1, -(2**63)])).map(lambda v: AnyValue(int_value=v)),
        _doubles().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=16).map(lambda v: AnyValue(bytes_value=v)),
        st.builds(AnyValue),  # no field set
    )


def _key_value(key: SearchStrategy[str], value: SearchStrategy[AnyValue]) -> SearchStrategy[KeyValue]:
    return st.builds(_make_key_value, key, value)


def _make_key_value(key: str, value: AnyValue) -> KeyValue:
    kv = KeyValue(key=key)
    if value.WhichOneof("value") is not None:  # an empty value stays absent (see module docstring)
        kv.value.CopyFrom(value)
    return kv


@functools.cache
def _keys() -> SearchStrategy[str]:
    return st.one_of(st.sampled_from(COMMON_SPAN_KEYS), st.sampled_from(["k", "a.b", "x" * 40]), _texts(16))


@functools.cache
def any_values(max_depth: int = 2) -> SearchStrategy[AnyValue]:
    """Any AnyValue: every scalar kind, the empty value, and arrays / kvlists nested to ``max_depth``."""
    if max_depth <= 0:
        return _scalar_values()
    inner = any_values(max_depth - 1)
    arrays = st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs)))
    kvlists = st.lists(_key_value(_keys(), inner), max_size=3, unique_by=lambda kv: kv.key).map(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs))
    )
    return st.one_of(_scalar_values(), arrays, kvlists)


@functools.cache
def key_values() -> SearchStrategy[KeyValue]:
    """One attribute: any key (common semantic-convention keys often), any value."""
    return _key_value(_keys(), any_values())


_HTTP_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "_OTHER", "get"]


@functools.cache
def _typed_common_attribute() -> SearchStrategy[KeyValue]:
    """A well-known key with its usual type, or a plausible wrong one (int as string and vice versa)."""
    method = st.sampled_from(_HTTP_METHODS)
    code = st.one_of(st.sampled_from([200, 201, 204, 301, 304, 400, 404, 429, 500, 503]), INT64)
    url = st.one_of(st.just("http://cart:8080/api/cart/42?x=1"), _texts(40))
    typed: dict[str, SearchStrategy[AnyValue]] = {
        "http.method": method.map(lambda v: AnyValue(string_value=v)),
        "http.request.method": method.map(lambda v: AnyValue(string_value=v)),
        "http.status_code": code.map(lambda v: AnyValue(int_value=v)),
        "http.response.status_code": code.map(lambda v: AnyValue(int_value=v)),
        "http.route": st.sampled_from(["/", "/api/cart/{id}", ""]).map(lambda v: AnyValue(string_value=v)),
        "http.url": url.map(lambda v: AnyValue(string_value=v)),
        "url.full": url.map(lambda v: AnyValue(string_value=v)),
        "db.system": st.sampled_from(["postgresql", "redis", "mysql"]).map(
            lambda v: AnyValue(string_value=v)
        ),
        "peer.service": st.sampled_from(["cart", "payment", ""]).map(lambda v: AnyValue(string_value=v)),
        "rpc.method": st.sampled_from(["GetCart", "PlaceOrder"]).map(lambda v: AnyValue(string_value=v)),
        "service.name": st.sampled_from(["frontend", "cart"]).map(lambda v: AnyValue(string_value=v)),
    }
    as_string = code.map(lambda v: AnyValue(string_value=str(v)))  # "200"
    as_int = st.integers(0, 10).map(lambda v: AnyValue(int_value=v))
    wrong = st.one_of(
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.floats(200, 599).map(lambda v: AnyValue(double_value=v)),
        st.just(AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="GET")]))),
        st.builds(AnyValue),
    )
    # Usual type half the time; otherwise the swapped scalar type (int <-> string) or something odd.
    return st.one_of(
        [
            _key_value(
                st.just(key),
                st.one_of(typed[key], typed[key], as_int if key in _STRING_KEYS else as_string, wrong),
            )
            for key in COMMON_SPAN_KEYS
        ]
    )


_STRING_KEYS = frozenset(COMMON_SPAN_KEYS) - {"http.status_code", "http.response.status_code"}


@functools.cache
def attribute_lists(max_size: int = 12) -> SearchStrategy[list[KeyValue]]:
    """0..max_size attributes with unique keys, often including well-known keys."""
    common = _typed_common_attribute()
    return st.lists(st.one_of(common, common, key_values()), max_size=max_size, unique_by=lambda kv: kv.key)


# ----------------------------------------------------------------------------------------------
# Spans

_TRACE_STATES = ["", "rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", "ot=th:8"]
_REALISTIC_NANOS = st.integers(1_600_000_000 * 10**9, 1_900_000_000 * 10**9)


@functools.cache
def _trace_states() -> SearchStrategy[str]:
    return st.one_of(st.sampled_from(_TRACE_STATES), _texts(30))


@functools.cache
def _times() -> SearchStrategy[tuple[int, int]]:
    """(start, end): mostly realistic, occasionally anywhere in uint64 (end before start included)."""
    realistic = st.tuples(_REALISTIC_NANOS, st.integers(0, 10**11)).map(lambda t: (t[0], t[0] + t[1]))
    edges = st.sampled_from([(0, 0), (0, 2**64 - 1), (2**64 - 1, 2**64 - 1), (2**64 - 1, 0)])
    return st.one_of(realistic, realistic, st.tuples(UINT64, UINT64), edges)


@functools.cache
def _dropped() -> SearchStrategy[int]:
    return st.one_of(st.just(0), st.just(0), st.integers(1, 5), UINT32)


@functools.cache
def _flags() -> SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 0x100, 0x101, 0x301]), UINT32)


@st.composite
def _events(draw: st.DrawFn) -> Span.Event:
    event = Span.Event(
        time_unix_nano=draw(st.one_of(_REALISTIC_NANOS, UINT64)),
        name=draw(st.one_of(st.sampled_from(["exception", "message"]), _texts())),
        dropped_attributes_count=draw(_dropped()),
    )
    event.attributes.extend(draw(attribute_lists(max_size=3)))
    return event


@st.composite
def _links(draw: st.DrawFn) -> Span.Link:
    link = Span.Link(
        trace_id=draw(trace_ids()),
        span_id=draw(span_ids()),
        trace_state=draw(_trace_states()),
        dropped_attributes_count=draw(_dropped()),
        flags=draw(_flags()),
    )
    link.attributes.extend(draw(attribute_lists(max_size=2)))
    return link


_EVENT_LISTS = st.lists(_events(), max_size=3)
_LINK_LISTS = st.lists(_links(), max_size=2)


@functools.cache
def _statuses() -> SearchStrategy[Status | None]:
    status = st.builds(Status, code=st.sampled_from([0, 1, 2]), message=_texts())
    # An empty Status is the same as none (module docstring): generate it as absent.
    return st.one_of(st.none(), status.map(lambda s: s if s.code or s.message else None))


@functools.cache
def _kinds() -> SearchStrategy[int]:
    return st.one_of(st.integers(0, 5), st.just(7))  # 7: an unknown kind from a newer SDK


@st.composite
def spans(draw: st.DrawFn, trace_id: bytes | SearchStrategy[bytes] | None = None) -> Span:
    """A span with every field drawn; ``trace_id`` fixes the trace id (bytes) or draws it (strategy)."""
    if trace_id is None:
        trace_id = trace_ids()
    start, end = draw(_times())
    span = Span(
        trace_id=trace_id if isinstance(trace_id, bytes) else draw(trace_id),
        span_id=draw(span_ids()),
        trace_state=draw(_trace_states()),
        parent_span_id=draw(st.one_of(st.just(b""), span_ids())),
        flags=draw(_flags()),
        name=draw(st.one_of(st.sampled_from(["GET /api/cart", "SELECT shop.orders"]), _texts(30))),
        kind=draw(_kinds()),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        dropped_attributes_count=draw(_dropped()),
        dropped_events_count=draw(_dropped()),
        dropped_links_count=draw(_dropped()),
    )
    span.attributes.extend(draw(attribute_lists()))
    span.events.extend(draw(_EVENT_LISTS))
    span.links.extend(draw(_LINK_LISTS))
    status = draw(_statuses())
    if status is not None:
        span.status.CopyFrom(status)
    return span


# ----------------------------------------------------------------------------------------------
# Requests

_SCHEMA_URLS = ["", "", "https://opentelemetry.io/schemas/1.24.0"]


@functools.cache
def _schema_urls() -> SearchStrategy[str]:
    return st.one_of(st.sampled_from(_SCHEMA_URLS), _texts(20))


@st.composite
def _resources(draw: st.DrawFn) -> Resource | None:
    """A resource, usually with service.name (any string; sometimes missing); None if empty."""
    attrs = draw(st.lists(key_values(), max_size=4, unique_by=lambda kv: kv.key))
    attrs = [kv for kv in attrs if kv.key != "service.name"]
    if draw(st.integers(0, 4)):  # 80%: has a string service.name
        name = draw(st.one_of(st.sampled_from(["frontend", "cart", "checkout"]), _texts(12)))
        attrs.insert(
            draw(st.integers(0, len(attrs))), KeyValue(key="service.name", value=AnyValue(string_value=name))
        )
    resource = Resource(attributes=attrs, dropped_attributes_count=draw(_dropped()))
    return resource if resource.ByteSize() else None


@st.composite
def _scopes(draw: st.DrawFn) -> InstrumentationScope | None:
    scope = InstrumentationScope(
        name=draw(st.one_of(st.sampled_from(["io.opentelemetry.http", "manual"]), _texts())),
        version=draw(st.one_of(st.just(""), st.just("1.2.3"), _texts(8))),
        dropped_attributes_count=draw(_dropped()),
    )
    scope.attributes.extend(draw(st.lists(key_values(), max_size=2, unique_by=lambda kv: kv.key)))
    return scope if scope.ByteSize() else None


_ANY_SPANS = spans()
_RESOURCES = _resources()
_SCOPES = _scopes()


@st.composite
def export_requests(draw: st.DrawFn, max_spans: int = 24) -> ExportTraceServiceRequest:
    """1..3 ResourceSpans of 1..3 ScopeSpans of 0..8 spans each, at most ``max_spans`` spans in all.

    Spans come from a few traces, so traces share ids and are often split across resources and
    scopes; span ids are unique within the request; some parent ids point at another span of the
    same trace (a real tree), others at spans that are not in the request (a partial trace); parents
    never form a cycle.
    """
    layout = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))  # scopes per resource
    slots = sum(layout)
    ids = draw(st.lists(trace_ids(), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(0, min(max_spans, 8 * slots)))
    flat = draw(st.lists(_ANY_SPANS, min_size=n, max_size=n))
    seen: set[bytes] = set()
    for span in flat:
        span.trace_id = ids[draw(st.integers(0, len(ids) - 1))]
        while span.span_id in seen:  # unique within the request; fixed up rather than filtered
            span.span_id = (int.from_bytes(span.span_id, "big") % (2**64 - 1) + 1).to_bytes(8, "big")
        seen.add(span.span_id)
    for i, span in enumerate(flat):
        same_trace = [s.span_id for s in flat[:i] if s.trace_id == span.trace_id]
        if same_trace and draw(st.booleans()):
            span.parent_span_id = draw(st.sampled_from(same_trace))
        elif span.parent_span_id in {s.span_id for s in flat[i:]}:
            span.parent_span_id = b""  # parents only point backwards: no self-parents, no cycles
    buckets: list[list[Span]] = [[] for _ in range(slots)]
    for span in flat:
        slot = draw(st.integers(0, slots - 1))
        while len(buckets[slot]) >= 8:  # room is guaranteed: len(flat) <= 8 * slots
            slot = (slot + 1) % slots
        buckets[slot].append(span)

    request = ExportTraceServiceRequest()
    slot = 0
    for n_scopes in layout:
        rs = request.resource_spans.add(schema_url=draw(_schema_urls()))
        resource = draw(_RESOURCES)
        if resource is not None:
            rs.resource.CopyFrom(resource)
        for _ in range(n_scopes):
            ss = rs.scope_spans.add(schema_url=draw(_schema_urls()))
            scope = draw(_SCOPES)
            if scope is not None:
                ss.scope.CopyFrom(scope)
            ss.spans.extend(buckets[slot])
            slot += 1
    return request


# ----------------------------------------------------------------------------------------------
# Comparison helpers


def messages_equal(a: Message, b: Message) -> bool:
    """Exact equality via deterministic serialization: NaN equals NaN, -0.0 differs from 0.0.

    ``==`` on messages depends on the protobuf runtime: upb compares doubles bit for bit, the pure-Python
    one numerically (NaN != NaN, -0.0 == 0.0). Serialized bytes are exact everywhere.
    """
    return type(a) is type(b) and a.SerializeToString(deterministic=True) == b.SerializeToString(
        deterministic=True
    )


CanonicalSpan = tuple[bytes, str, bytes, str, bytes]


def canonical_spans(request: ExportTraceServiceRequest) -> list[CanonicalSpan]:
    """A normal form that ignores how spans are grouped into ResourceSpans/ScopeSpans and in what order.

    One (Resource bytes, resource schema_url, InstrumentationScope bytes, scope schema_url, Span bytes)
    per span, serialized deterministically, sorted. An absent resource or scope serializes like an empty
    one, which is the equivalence our storage (and proto3 JSON) has. Empty ScopeSpans/ResourceSpans
    vanish.
    """
    out: list[CanonicalSpan] = []
    for rs in request.resource_spans:
        resource = rs.resource.SerializeToString(deterministic=True)
        for ss in rs.scope_spans:
            scope = ss.scope.SerializeToString(deterministic=True)
            for span in ss.spans:
                out.append(
                    (
                        resource,
                        rs.schema_url,
                        scope,
                        ss.schema_url,
                        span.SerializeToString(deterministic=True),
                    )
                )
    out.sort()
    return out


def request_from_canonical(rows: Iterable[CanonicalSpan]) -> ExportTraceServiceRequest:
    """Rebuild a request from canonical rows, grouped as an SDK would (one ResourceSpans per resource)."""
    request = ExportTraceServiceRequest()
    resources: dict[tuple[bytes, str], ResourceSpans] = {}
    scopes: dict[tuple[bytes, str, bytes, str], ScopeSpans] = {}
    for resource, resource_schema, scope, scope_schema, span in rows:
        rs = resources.get((resource, resource_schema))
        if rs is None:
            rs = resources[(resource, resource_schema)] = request.resource_spans.add(
                schema_url=resource_schema
            )
            if resource:
                rs.resource.ParseFromString(resource)
        ss = scopes.get((resource, resource_schema, scope, scope_schema))
        if ss is None:
            ss = scopes[(resource, resource_schema, scope, scope_schema)] = rs.scope_spans.add(
                schema_url=scope_schema
            )
            if scope:
                ss.scope.ParseFromString(scope)
        ss.spans.add().ParseFromString(span)
    return request


def only_trace(request: ExportTraceServiceRequest, trace_id: bytes) -> ExportTraceServiceRequest:
    """A copy of ``request`` holding only the spans of ``trace_id`` (what a lookup should return)."""
    out = ExportTraceServiceRequest()
    out.CopyFrom(request)
    for rs in out.resource_spans:
        for ss in rs.scope_spans:
            keep = [s for s in ss.spans if s.trace_id == trace_id]
            del ss.spans[:]
            ss.spans.extend(keep)
    return out
