"""The columnar TraceQL evaluator against a reference written span by span over the protobuf messages
(independent of our Arrow layout): same matching traces, same matching spans, for every construct
Grafana's builder emits and the scopes beyond it."""

from __future__ import annotations

import re
import time

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracelake.codec.decode import decode_otlp
from tracelake.encoding.v1.layout import sort_spans, to_block_rows
from tracelake.synth import SynthConfig, generate_request_bytes
from tracelake.traceql.ast import (
    Aggregate,
    Attribute,
    Comparison,
    FieldAnd,
    FieldOr,
    Intrinsic,
    LiteralKind,
    Op,
    ScalarFilter,
    Scope,
    SpansetAnd,
    SpansetFilter,
    SpansetOr,
    Structural,
)
from tracelake.traceql.evaluate import KIND_CODES, STATUS_CODES, evaluate
from tracelake.traceql.frame import SpanFrame
from tracelake.traceql.parser import parse

QUERIES = [
    "{}",
    "{ .http.status_code = 500 }",
    "{ span.http.status_code >= 400 }",
    '{ span.http.status_code = "500" }',
    '{ resource.service.name = "payment" && status = error }',
    '{ name =~ "GET.*" && duration > 100ms }',
    '{ name !~ "GET.*" }',
    '{ name > "M" }',
    "{ traceDuration > 500ms }",
    '{ rootServiceName = "frontend" } && { kind = client }',
    '{ rootName != "GET /" } || { status = ok }',
    '{ .http.method = "POST" || .db.system = "postgresql" }',
    '{ kind = server && span.http.route =~ "/api/.*" }',
    "{ .net.host.port > 8000 }",
    '{ .service.name != "frontend" }',
    "{ span.test.flag = true }",
    "{ .test.flag != false }",
    "{ .test.ratio < 0.5 }",
    "{ .test.ratio >= 1 }",
    "{ .missing = nil }",
    "{ span.http.method != nil }",
    '{ statusMessage =~ ".+" }',
    '{ instrumentation:name =~ ".*http.*" }',
    '{ event:name = "exception" }',
    '{ event.exception.type =~ ".*Error" }',
    "{ span:childCount > 2 }",
    '{ .deployment.environment = "production" && duration < 5ms }',
    '{ (resource.service.name = "cart" || resource.service.name = "payment") && kind = server }',
    '{ instrumentation.lib.attr = "x" }',
    '{ link:traceID = "0102030405060708090a0b0c0d0e0f10" }',
    '{ link.link.kind = "follows" }',
    # structural operators
    '{ resource.service.name = "frontend" } >> { span.db.system = "postgresql" }',
    "{ kind = server } > { kind = client }",
    "{ kind = client } < { kind = server }",
    "{ .db.system != nil } << { }",
    "{ kind = client } ~ { kind = client }",
    "{ kind = server } !> { kind = internal }",
    "{ kind = server } !>> { status = error }",
    "{ .db.system != nil } !<< { kind = server }",
    "{ kind = client } !< { }",
    "{ kind = client } !~ { kind = client }",
    '{ rootServiceName = "frontend" } &>> { status = error }',
    '{ } &> { name =~ "SELECT.*" }',
    "{ kind = client } &< { kind = server }",
    "{ status = error } &<< { kind = server }",
    "{ kind = client } &~ { kind = client }",
    '({ kind = server } > { kind = client }) && { .db.system = "redis" }',
    # pipelines
    "{ kind = client } | count() > 3",
    "{ } | avg(duration) > 50ms",
    "{ .http.status_code != nil } | max(span.http.status_code) >= 500",
    "{ } | min(duration) < 1ms",
    "{ } | sum(duration) > 1s",
    "{ kind = server } | { status = error }",
    "{ kind = server } >> { kind = client } | select(span.db.statement)",
]


def _typed_request() -> ExportTraceServiceRequest:
    """Value types and scopes synth does not emit: bools, doubles, a string http.status_code, scope
    attributes, links with attributes."""
    now = time.time_ns()
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "typed"
    ss = rs.scope_spans.add()
    ss.scope.name = "typed-lib"
    ss.scope.attributes.add(key="lib.attr").value.string_value = "x"
    for i in range(6):
        span = ss.spans.add(
            trace_id=bytes([9] * 15 + [i + 1]),
            span_id=bytes([1] * 7 + [i + 1]),
            name=f"typed-{i}",
            start_time_unix_nano=now + i,
            end_time_unix_nano=now + i * 10**8,
            kind=i % 6,
            status={"code": i % 3},
        )
        span.attributes.add(key="test.flag").value.bool_value = i % 2 == 0
        span.attributes.add(key="test.ratio").value.double_value = i / 4
        span.attributes.add(key="http.status_code").value.string_value = str(500 + i)
        link = span.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)))
        link.attributes.add(key="link.kind").value.string_value = "follows" if i % 2 else "child"
    # a trace whose root has not arrived: no root name or service to match
    ss.spans.add(
        trace_id=bytes([9] * 15 + [7]),
        span_id=bytes([2] * 8),
        parent_span_id=bytes([5] * 8),
        name="orphan",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 5,
    )
    return request


@pytest.fixture(scope="module")
def data() -> tuple[SpanFrame, list[dict]]:
    payloads = list(
        generate_request_bytes(SynthConfig(traces=300, traces_per_request=100, seed=5, error_rate=0.2))
    )
    payloads.append(_typed_request().SerializeToString())
    tables = [decode_otlp(p).table for p in payloads]
    spans = sort_spans(pa.concat_tables(tables))
    frame = SpanFrame(to_block_rows(spans))
    reference = _reference_spans(payloads)
    by_id = {(r["trace_id"], r["span_id"]): r for r in reference}
    ordered = [
        by_id[(t, s)]
        for t, s in zip(spans["trace_id"].to_pylist(), spans["span_id"].to_pylist(), strict=True)
    ]
    return frame, ordered


def _value(value: AnyValue):
    which = value.WhichOneof("value")
    if which == "string_value":
        return ("string", value.string_value)
    if which == "int_value":
        return ("int", value.int_value)
    if which == "double_value":
        return ("float", value.double_value)
    if which == "bool_value":
        return ("bool", value.bool_value)
    return ("other", None)


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


def _reference_spans(payloads: list[bytes]) -> list[dict]:
    spans = []
    for payload in payloads:
        request = ExportTraceServiceRequest.FromString(payload)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append(
                        {
                            "trace_id": span.trace_id,
                            "span_id": span.span_id,
                            "parent": span.parent_span_id,
                            "name": span.name,
                            "kind": span.kind,
                            "status": span.status.code,
                            "status_message": span.status.message,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "span": _attrs(span.attributes),
                            "resource": _attrs(rs.resource.attributes),
                            "scope": _attrs(ss.scope.attributes),
                            "scope_name": ss.scope.name,
                            "events": [(e.name, _attrs(e.attributes)) for e in span.events],
                            "links": [(lk.trace_id.hex(), _attrs(lk.attributes)) for lk in span.links],
                        }
                    )
    traces: dict[bytes, list[dict]] = {}
    for s in spans:
        traces.setdefault(s["trace_id"], []).append(s)
    for members in traces.values():
        ids = {s["span_id"] for s in members}
        start = min(s["start"] for s in members)
        end = max(s["end"] if s["end"] >= s["start"] else s["start"] for s in members)
        by_start = sorted(members, key=lambda s: s["start"])
        root = next((s for s in by_start if not s["parent"]), None)  # not arrived: no root
        by_id = {s["span_id"]: s for s in members}
        for s in members:
            s["parent_span"] = by_id.get(s["parent"]) if s["parent"] else None
            s["trace_duration"] = max(end - start, 0)
            s["root_name"] = root["name"] if root else None
            s["root_service"] = root["resource"].get("service.name", ("", ""))[1] if root else None
            s["children"] = sum(1 for o in members if o["parent"] == s["span_id"] and o["parent"] in ids)
    return spans


def _compare(left, op: Op, right) -> bool:
    if left is None:  # a value that is not there matches nothing
        return False
    if op is Op.RE:
        return isinstance(left, str) and re.fullmatch(right, left) is not None
    if op is Op.NRE:
        return isinstance(left, str) and re.fullmatch(right, left) is None
    return {
        Op.EQ: lambda: left == right,
        Op.NE: lambda: left != right,
        Op.GT: lambda: left > right,
        Op.GE: lambda: left >= right,
        Op.LT: lambda: left < right,
        Op.LE: lambda: left <= right,
    }[op]()


_KIND_OF_LITERAL = {
    LiteralKind.STRING: ("string",),
    LiteralKind.INT: ("int", "float"),
    LiteralKind.FLOAT: ("int", "float"),
    LiteralKind.BOOL: ("bool",),
}


def _attribute_values(span: dict, attr: Attribute) -> list[tuple[str, object]]:
    if attr.scope is Scope.EVENT:
        return [a[attr.name] for _, a in span["events"] if attr.name in a]
    if attr.scope is Scope.LINK:
        return [a[attr.name] for _, a in span["links"] if attr.name in a]
    dicts = {
        Scope.SPAN: [span["span"]],
        Scope.RESOURCE: [span["resource"]],
        Scope.NONE: [span["span"], span["resource"]],
        Scope.INSTRUMENTATION: [span["scope"]],
    }[attr.scope]
    return [d[attr.name] for d in dicts if attr.name in d]


def _holds(span: dict, cmp: Comparison) -> bool:
    lit = cmp.value
    if isinstance(cmp.field, Attribute):
        values = _attribute_values(span, cmp.field)
        if lit.kind is LiteralKind.NIL:
            return (not values) if cmp.op is Op.EQ else bool(values)
        kinds = _KIND_OF_LITERAL.get(lit.kind, ())
        return any(
            kind in kinds and (kind != "bool" or cmp.op in (Op.EQ, Op.NE)) and _compare(v, cmp.op, lit.value)
            for kind, v in values
        )
    field = cmp.field
    scalar = {
        Intrinsic.NAME: lambda: span["name"],
        Intrinsic.STATUS_MESSAGE: lambda: span["status_message"],
        Intrinsic.DURATION: lambda: (span["end"] - span["start"]) if span["end"] >= span["start"] else 0,
        Intrinsic.TRACE_DURATION: lambda: span["trace_duration"],
        Intrinsic.ROOT_NAME: lambda: span["root_name"],
        Intrinsic.ROOT_SERVICE_NAME: lambda: span["root_service"],
        Intrinsic.CHILD_COUNT: lambda: span["children"],
        Intrinsic.INSTRUMENTATION_NAME: lambda: span["scope_name"],
    }
    if field is Intrinsic.STATUS:
        return _compare(span["status"], cmp.op, STATUS_CODES[lit.value])
    if field is Intrinsic.KIND:
        return _compare(span["kind"], cmp.op, KIND_CODES[lit.value])
    if field is Intrinsic.EVENT_NAME:
        return any(_compare(name, cmp.op, lit.value) for name, _ in span["events"])
    if field is Intrinsic.LINK_TRACE_ID:
        return any(_compare(tid, cmp.op, lit.value) for tid, _ in span["links"])
    return _compare(scalar[field](), cmp.op, lit.value)


def _field_holds(span: dict, expr) -> bool:
    if expr is None:
        return True
    if isinstance(expr, Comparison):
        return _holds(span, expr)
    results = [_field_holds(span, t) for t in expr.terms]
    return all(results) if isinstance(expr, FieldAnd) else any(results)


def _ancestors(span: dict) -> list[dict]:
    out, cur = [], span["parent_span"]
    while cur is not None:
        out.append(cur)
        cur = cur["parent_span"]
    return out


def _related(base: str, spans: list[dict], left: set[bytes]) -> set[bytes]:
    """Span ids standing in relation ``base`` to some span of ``left`` (right side's view)."""
    out = set()
    for s in spans:
        if base == ">>":
            hit = any(a["span_id"] in left for a in _ancestors(s))
        elif base == "<<":
            hit = any(s in _ancestors(o) for o in spans if o["span_id"] in left)
        elif base == ">":
            hit = s["parent_span"] is not None and s["parent_span"]["span_id"] in left
        elif base == "<":
            hit = any(o["parent_span"] is s for o in spans if o["span_id"] in left)
        else:
            hit = s["parent_span"] is not None and any(
                o is not s and o["parent_span"] is s["parent_span"] for o in spans if o["span_id"] in left
            )
        if hit:
            out.add(s["span_id"])
    return out


_BACKWARD = {">>": "<<", "<<": ">>", ">": "<", "<": ">", "~": "~"}


def _numeric(span: dict, field) -> float | None:
    if field is Intrinsic.DURATION:
        return span["end"] - span["start"]
    for kind, value in _attribute_values(span, field):
        if kind in ("int", "float"):
            return value
    return None


def _reference_query(query, spans: list[dict]) -> tuple[set[bytes], set[bytes]]:
    traces, chosen = _reference(query.expr, spans)
    for stage in query.stages:
        if isinstance(stage, SpansetFilter):
            chosen = {s["span_id"] for s in spans if s["span_id"] in chosen and _field_holds(s, stage.expr)}
            traces = {s["trace_id"] for s in spans if s["span_id"] in chosen}
        elif isinstance(stage, ScalarFilter):
            keep = set()
            for trace in traces:
                members = [s for s in spans if s["trace_id"] == trace and s["span_id"] in chosen]
                if stage.aggregate is Aggregate.COUNT:
                    result = len(members)
                else:
                    values = [v for v in (_numeric(s, stage.field) for s in members) if v is not None]
                    if not values:
                        continue
                    result = {
                        Aggregate.AVG: lambda v: sum(v) / len(v),
                        Aggregate.SUM: sum,
                        Aggregate.MIN: min,
                        Aggregate.MAX: max,
                    }[stage.aggregate](values)
                if _compare(result, stage.op, stage.value.value):
                    keep.add(trace)
            traces = keep
            chosen = {s["span_id"] for s in spans if s["span_id"] in chosen and s["trace_id"] in keep}
    return traces, chosen


def _reference(expr, spans: list[dict]) -> tuple[set[bytes], set[bytes]]:
    """(matching trace ids, span ids in the result spansets)."""
    if isinstance(expr, Structural):
        _, left = _reference(expr.lhs, spans)
        _, right = _reference(expr.rhs, spans)
        base = expr.op.value.lstrip("!&")
        by_trace: dict[bytes, list[dict]] = {}
        for s in spans:
            by_trace.setdefault(s["trace_id"], []).append(s)
        result: set[bytes] = set()
        for members in by_trace.values():
            related = _related(base, members, left) & {s["span_id"] for s in members}
            if expr.op.value.startswith("!"):
                result |= {s["span_id"] for s in members if s["span_id"] in right} - related
                continue
            got = related & right
            result |= got
            if expr.op.value.startswith("&"):
                result |= _related(_BACKWARD[base], members, got) & left
        return {s["trace_id"] for s in spans if s["span_id"] in result}, result
    if isinstance(expr, SpansetFilter):
        hit = [s for s in spans if _field_holds(s, expr.expr)]
        return {s["trace_id"] for s in hit}, {s["span_id"] for s in hit}
    parts = [_reference(t, spans) for t in expr.terms]
    if isinstance(expr, SpansetAnd):
        traces = set.intersection(*(p[0] for p in parts))
    else:
        assert isinstance(expr, SpansetOr)
        traces = set.union(*(p[0] for p in parts))
    ids = {s["span_id"] for s in spans if s["trace_id"] in traces}
    chosen = set()
    for part_traces, part_spans in parts:
        chosen |= {sid for sid in part_spans if sid in ids} & {
            s["span_id"] for s in spans if s["trace_id"] in part_traces
        }
    return traces, chosen


@pytest.mark.parametrize("text", QUERIES)
def test_columnar_evaluation_matches_reference(data, text: str) -> None:
    frame, spans = data
    query = parse(text)
    match = evaluate(query, frame)
    trace_ids = [spans[r]["trace_id"] for r in frame.first_rows]
    got_traces = {t for t, hit in zip(trace_ids, match.traces, strict=True) if hit}
    got_spans = {spans[r]["span_id"] for r in np.flatnonzero(match.spans)}
    want_traces, want_spans = _reference_query(query, spans)
    assert got_traces == want_traces
    assert got_spans == want_spans


def test_queries_select_something_and_not_everything(data) -> None:
    """The query list exercises real selections: most queries match some but not all traces."""
    frame, _ = data
    partial = 0
    for text in QUERIES:
        traces = evaluate(parse(text), frame).traces
        partial += 0 < traces.sum() < len(traces)
    assert partial >= len(QUERIES) - 6


def test_or_of_fields_is_one_span() -> None:
    """``{a || b}`` is one spanset; it parses to a FieldOr (guards the reference above)."""
    assert isinstance(parse('{ .a = "x" || .b = "y" }').expr.expr, FieldOr)
