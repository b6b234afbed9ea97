"""Sanity properties of the shared OTLP strategies: what the storage property tests build on."""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.strategies import (
    any_values,
    canonical_spans,
    export_requests,
    messages_equal,
    request_from_canonical,
    spans,
)

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _all_spans(request: ExportTraceServiceRequest) -> list[Span]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


@FAST
@given(request=export_requests())
def test_requests_serialize_and_parse_back_equal(request: ExportTraceServiceRequest) -> None:
    parsed = ExportTraceServiceRequest.FromString(request.SerializeToString())
    assert messages_equal(parsed, request)
    assert canonical_spans(parsed) == canonical_spans(request)


@FAST
@given(request=export_requests())
def test_requests_keep_the_documented_shape(request: ExportTraceServiceRequest) -> None:
    assert 1 <= len(request.resource_spans) <= 3
    for rs in request.resource_spans:
        assert 1 <= len(rs.scope_spans) <= 3
        assert rs.HasField("resource") == (rs.resource.ByteSize() > 0)  # never present-but-empty
        for ss in rs.scope_spans:
            assert len(ss.spans) <= 8
            assert ss.HasField("scope") == (ss.scope.ByteSize() > 0)
    all_spans = _all_spans(request)
    assert len(all_spans) <= 24
    assert len({s.span_id for s in all_spans}) == len(all_spans)
    for s in all_spans:
        assert len(s.trace_id) == 16 and any(s.trace_id)
        assert len(s.span_id) == 8 and any(s.span_id)
        assert s.parent_span_id == b"" or (len(s.parent_span_id) == 8 and any(s.parent_span_id))
        assert s.HasField("status") == (s.status.ByteSize() > 0)
        assert len({kv.key for kv in s.attributes}) == len(s.attributes)
    parents = {s.span_id: s.parent_span_id for s in all_spans}
    for span_id in parents:  # parent chains end: no self-parents, no cycles
        chain = {span_id}
        while parents.get(span_id):
            span_id = parents[span_id]
            assert span_id not in chain
            chain.add(span_id)


@FAST
@given(request=export_requests(), seed=st.integers(0, 2**32 - 1))
def test_canonical_spans_ignore_grouping_and_order(request: ExportTraceServiceRequest, seed: int) -> None:
    rows = canonical_spans(request)
    rng = random.Random(seed)
    shuffled = list(rows)
    rng.shuffle(shuffled)
    regrouped = request_from_canonical(shuffled)
    assert canonical_spans(regrouped) == rows
    # One ResourceSpans/ScopeSpans per span is the same set of spans too.
    scattered = ExportTraceServiceRequest()
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                new_rs = scattered.resource_spans.add(schema_url=rs.schema_url)
                if rs.HasField("resource"):
                    new_rs.resource.CopyFrom(rs.resource)
                new_ss = new_rs.scope_spans.add(schema_url=ss.schema_url)
                if ss.HasField("scope"):
                    new_ss.scope.CopyFrom(ss.scope)
                new_ss.spans.append(span)
    assert canonical_spans(scattered) == rows


@FAST
@given(request=export_requests())
def test_canonical_spans_see_every_span_change(request: ExportTraceServiceRequest) -> None:
    all_spans = _all_spans(request)
    if not all_spans:
        return
    before = canonical_spans(request)
    all_spans[0].dropped_links_count ^= 1
    assert canonical_spans(request) != before


def test_messages_equal_is_exact_for_doubles() -> None:
    assert messages_equal(AnyValue(double_value=math.nan), AnyValue(double_value=math.nan))
    assert not messages_equal(AnyValue(double_value=0.0), AnyValue(double_value=-0.0))
    assert not messages_equal(AnyValue(), AnyValue(string_value=""))
    assert not messages_equal(AnyValue(int_value=1), Span())


def test_strategies_reach_the_corners() -> None:
    """The edge cases the round-trip tests rely on actually get generated.

    Values are drawn in batches (cheap) and spans separately, with enough examples that the check does
    not hinge on luck: hypothesis seeds generation with constants from loaded modules, so even a
    derandomized run differs with what else the session imported.
    """
    seen: set[str] = set()
    quiet = {
        "deadline": None,
        "derandomize": True,
        "database": None,
        "suppress_health_check": list(HealthCheck),
    }

    @settings(max_examples=150, **quiet)
    @given(values=st.lists(any_values(), min_size=8, max_size=8))
    def collect_values(values: list[AnyValue]) -> None:
        while values:
            v = values.pop()
            kind = v.WhichOneof("value")
            seen.add(kind or "empty")
            if kind == "double_value" and math.isnan(v.double_value):
                seen.add("nan")
            if kind == "double_value" and math.isinf(v.double_value):
                seen.add("inf")
            if kind == "double_value" and math.copysign(1.0, v.double_value) < 0 and v.double_value == 0:
                seen.add("-0.0")
            if kind == "array_value":
                values.extend(v.array_value.values)
            if kind == "kvlist_value":
                values.extend(kv.value for kv in v.kvlist_value.values)

    @settings(max_examples=200, **quiet)
    @given(span=spans())
    def collect_spans(span: Span) -> None:
        if span.kind > 5:
            seen.add("unknown kind")
        if span.end_time_unix_nano < span.start_time_unix_nano:
            seen.add("end before start")
        if span.start_time_unix_nano >= 2**63:
            seen.add("huge time")
        for kv in span.attributes:
            if kv.key == "http.status_code" and kv.value.WhichOneof("value") == "string_value":
                seen.add("status code as string")
        if span.links and span.events and span.HasField("status"):
            seen.add("links, events and status")

    collect_values()
    collect_spans()
    expected = {
        "string_value",
        "bool_value",
        "int_value",
        "double_value",
        "bytes_value",
        "array_value",
        "kvlist_value",
        "empty",
        "nan",
        "inf",
        "-0.0",
        "unknown kind",
        "end before start",
        "huge time",
        "status code as string",
        "links, events and status",
    }
    assert expected <= seen, expected - seen
