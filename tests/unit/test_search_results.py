"""Search answers survive the round trip a query-frontend makes: TraceHit -> Tempo JSON -> TraceHit."""

from __future__ import annotations

from tracelake.search.results import SpanHit, TraceHit, hit_from_json, trace_json


def test_hit_json_round_trip() -> None:
    hit = TraceHit(
        trace_id=bytes(3) + bytes(range(1, 14)),
        root_service_name="frontend",
        root_span_name="GET /",
        start_ns=1_796_038_261_218_253_584,
        duration_ns=275_000_000,
        spans=[
            SpanHit(
                bytes(range(8)),
                "SELECT",
                1_796_038_261_218_253_600,
                1234,
                [
                    ("http.status_code", ("intValue", 500)),
                    ("status", ("stringValue", "error")),
                    ("ratio", ("doubleValue", 0.25)),
                    ("flag", ("boolValue", True)),
                ],
            )
        ],
        matched=4,
        service_stats={"frontend": (3, 1), "cart": (2, 0)},
    )
    again = hit_from_json(trace_json(hit, traceql=True))
    assert again == hit
    plain = hit_from_json(trace_json(hit, traceql=False))  # a tag search: no span sets
    assert (plain.trace_id, plain.start_ns, plain.spans) == (hit.trace_id, hit.start_ns, [])
