"""The distributor's checks as a pure function: nesting, byte-exact truncation, time range."""

from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.codec.encode import spans_to_traces_data
from tracelake.codec.validate import REASON_BAD_ATTRIBUTE, REASON_TIME_RANGE, SpanRules, prepare_spans

NOW = time.time_ns()
RULES = SpanRules(max_span_age_ns=3600 * 10**9, max_span_future_ns=60 * 10**9, max_attribute_bytes=10)


def _request(depths: list[int]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "é" * 20  # 40 bytes
    spans = rs.scope_spans.add().spans
    for i, depth in enumerate(depths):
        span = spans.add(
            trace_id=bytes([i + 1]) * 16,
            span_id=bytes([i + 1]) * 8,
            start_time_unix_nano=NOW,
            end_time_unix_nano=NOW,
        )
        value = span.attributes.add(key="nested").value
        for _ in range(depth):
            value = value.array_value.values.add()
        value.string_value = "x"
    return request


def test_values_too_deep_to_read_back_are_refused() -> None:
    prepared = prepare_spans(_request([20, 300]).SerializeToString(), NOW, RULES)
    assert prepared.table.num_rows == 1
    assert prepared.rejected == {REASON_BAD_ATTRIBUTE: 1}
    spans_to_traces_data(prepared.table).SerializeToString()  # what is kept reads back


def test_truncation_is_byte_exact_and_reaches_the_resource() -> None:
    request = _request([0])
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="text").value.string_value = "ab" + "€" * 10  # 32 bytes
    event = span.events.add(name="e", time_unix_nano=NOW)
    event.attributes.add(key="msg").value.string_value = "z" * 50
    prepared = prepare_spans(request.SerializeToString(), NOW, RULES)
    out = spans_to_traces_data(prepared.table).resource_spans[0]
    attrs = {kv.key: kv.value for kv in out.scope_spans[0].spans[0].attributes}
    assert attrs["text"].string_value == "ab€€"  # 8 bytes: a third € would make 11
    assert out.resource.attributes[0].value.string_value == "ééééé"  # 10 bytes
    assert prepared.table["service_name"].to_pylist() == ["ééééé"]
    assert out.scope_spans[0].spans[0].events[0].attributes[0].value.string_value == "z" * 10
    assert prepared.truncated_attributes == 3


def test_time_range_is_relative_to_receive_time() -> None:
    request = _request([0, 0, 0])
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].start_time_unix_nano = NOW - 2 * 3600 * 10**9  # too old
    spans[2].end_time_unix_nano = NOW + 120 * 10**9  # too far ahead
    prepared = prepare_spans(request.SerializeToString(), NOW, RULES)
    assert prepared.table.num_rows == 1 and prepared.rejected == {REASON_TIME_RANGE: 2}
    later = prepare_spans(request.SerializeToString(), NOW + 3 * 3600 * 10**9, RULES)  # replayed much later
    assert later.rejected[REASON_TIME_RANGE] == 3
