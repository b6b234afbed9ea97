"""How the frontend combines the trace-by-id jobs' protobuf answers: one answer is passed on as it
is (or converted once), several are merged with each span once."""

from __future__ import annotations

import json

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.querier.api import trace_response
from tracelake.querier.frontend.api import _combined
from tracelake.synth import SynthConfig, generate_request_bytes


def _span_ids(trace: TracesData) -> list[bytes]:
    return [s.span_id for rs in trace.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _one_trace() -> TracesData:
    payload = next(generate_request_bytes(SynthConfig(traces=1, traces_per_request=1, seed=3)))
    return spans_to_traces_data(decode_otlp(payload).table)


def test_one_answer_is_what_a_querier_answers_in_every_form() -> None:
    trace = _one_trace()
    body = trace_response(trace, False, True).body  # a querier's answer to a job
    for v2 in (False, True):
        for as_protobuf in (False, True):
            ours, theirs = _combined([body], v2, as_protobuf), trace_response(trace, v2, as_protobuf)
            assert (ours.status, ours.content_type) == (theirs.status, theirs.content_type)
            if as_protobuf:
                assert ours.body == theirs.body
            else:
                assert json.loads(ours.body) == json.loads(theirs.body)


def test_several_answers_return_each_span_once() -> None:
    trace = _one_trace()
    spans = decode_otlp(trace.SerializeToString()).table
    assert spans.num_rows >= 4
    half = spans.num_rows // 2
    first = spans_to_traces_data(spans.slice(0, half + 1)).SerializeToString()  # one span in both
    second = spans_to_traces_data(spans.slice(half)).SerializeToString()
    merged = TracesData.FromString(_combined([first, second], False, True).body)
    assert sorted(_span_ids(merged)) == sorted(_span_ids(trace))
    assert _combined([], False, True).status == 404
    assert json.loads(_combined([], True, False).body) == {"trace": {}}
