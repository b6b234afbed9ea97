"""OTLP -> span table -> OTLP is exact for every span field, with either decoder."""

from __future__ import annotations

from hypothesis import given, settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.strategies import canonical_spans, export_requests
from tracelake.codec.assemble import assemble
from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.codec.pydecode import decode_request_py
from tracelake.model.schema import SPAN_SCHEMA, AttrType


@settings(max_examples=150, deadline=None)
@given(request=export_requests())
def test_round_trip_is_exact(request: ExportTraceServiceRequest) -> None:
    data = request.SerializeToString()
    decoded = decode_otlp(data)
    assert decoded.table.schema == SPAN_SCHEMA
    assert not decoded.rejected
    assert canonical_spans(spans_to_traces_data(decoded.table)) == canonical_spans(request)
    python = assemble(decode_request_py(data)).table
    # repr, not Table.equals: NaN must equal NaN, and -0.0 must differ from 0.0
    assert repr(python.to_pylist()) == repr(decoded.table.to_pylist())


def test_dedicated_attributes_move_to_their_columns_and_keep_their_place() -> None:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    )
    span.attributes.add(key="a").value.string_value = "x"
    span.attributes.add(key="http.status_code").value.int_value = 503
    span.attributes.add(key="http.method").value.int_value = 7  # wrong type: stays generic
    span.attributes.add(key="http.status_code").value.int_value = 504  # duplicate: stays generic
    table = decode_otlp(request.SerializeToString()).table
    row = table.to_pylist()[0]
    assert row["http_status_code"] == 503 and row["http_method"] is None
    assert [(a["key"], a["type"]) for a in row["attributes"]] == [
        ("a", AttrType.STRING),
        ("http.status_code", AttrType.DEDICATED),
        ("http.method", AttrType.INT),
        ("http.status_code", AttrType.INT),
    ]
    back = spans_to_traces_data(table).resource_spans[0].scope_spans[0].spans[0]
    assert back.SerializeToString(deterministic=True) == span.SerializeToString(deterministic=True)


def test_spans_with_malformed_ids_are_refused_and_counted() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)  # good
    spans.add(trace_id=b"\x01" * 8, span_id=b"\x02" * 8)  # short trace id
    spans.add(trace_id=bytes(16), span_id=b"\x02" * 8)  # all-zero trace id
    spans.add(trace_id=b"\x01" * 16, span_id=bytes(8))  # all-zero span id
    spans.add(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, parent_span_id=b"\x04" * 3)  # bad parent
    decoded = decode_otlp(request.SerializeToString())
    assert decoded.table.num_rows == 1
    assert dict(decoded.rejected) == {
        "invalid_trace_id": 2,
        "invalid_span_id": 1,
        "invalid_parent_span_id": 1,
    }


def test_duplicate_spans_are_returned_once() -> None:
    request = ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    for _ in range(3):
        ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="same")
    ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="same id, other content")
    out = spans_to_traces_data(decode_otlp(request.SerializeToString()).table)
    assert [s.name for s in out.resource_spans[0].scope_spans[0].spans] == ["same", "same id, other content"]
