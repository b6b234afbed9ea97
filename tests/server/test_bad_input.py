"""Junk sent to the OTLP receivers of a real ``tracelake serve``.

Every refusal answers with the right status and a ``google.rpc.Status`` that says what is wrong; bad
spans are refused one by one (partial success) while their good neighbours are stored; and nothing a
client sends disturbs what was accepted before it, or what another tenant sends.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.server.clients import Reply, export_grpc, grpc_error, requests_total, send, stored
from tests.server.harness import Server
from tests.server.sender import span_ids
from tracelake.otlp import request_to_otlp_json
from tracelake.synth import SynthConfig, generate_request_bytes

LIMIT = 256 * 1024  # distributor.max_request_bytes of these servers: small, so 413 is cheap to reach
MAX_ATTRIBUTE_BYTES = 100
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
SECOND = 1_000_000_000
DAY = 86_400 * SECOND


# ----- talking to the server


def discarded(server: Server, reason: str, tenant: str = "single-tenant") -> float:
    return server.metric("tracelake_discarded_spans_total", tenant=tenant, reason=reason)


def good_payload(seed: int, traces: int = 3) -> bytes:
    return next(generate_request_bytes(SynthConfig(traces=traces, traces_per_request=traces, seed=seed)))


# ----- building requests span by span


def span(
    trace_id: bytes,
    span_id: bytes,
    *,
    parent: bytes = b"",
    start: int | None = None,
    attributes: dict[str, str] | None = None,
) -> Span:
    start = time.time_ns() - SECOND if start is None else start
    out = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name="op",
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1000,
    )
    for key, value in (attributes or {}).items():
        out.attributes.add(key=key).value.string_value = value
    return out


def request(*spans: Span) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    resource_spans = out.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "junk-test"
    resource_spans.scope_spans.add().spans.extend(spans)
    return out


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


# ----- whole requests refused over HTTP


@dataclass(frozen=True)
class Junk:
    body: bytes | tuple[bytes, ...]  # a tuple is sent chunked, without Content-Length
    headers: dict[str, str]
    status: int
    message: str  # a fragment the error message must contain; "" for 404/405 (plain text answers)
    method: str = "POST"
    path: str = "/v1/traces"

    def send(self, server: Server, tenant: str | None = None) -> Reply:
        body = iter(self.body) if isinstance(self.body, tuple) else self.body
        headers = {**self.headers, "X-Scope-OrgID": tenant} if tenant else self.headers
        return send(server, body, headers, method=self.method, path=self.path)


_VALID = good_payload(seed=99)
JUNK = {
    "protobuf garbage": Junk(b"\xff\xff\xff\xff", PROTOBUF, 400, "undecodable OTLP protobuf"),
    "protobuf cut short": Junk(_VALID[: len(_VALID) // 2], PROTOBUF, 400, "undecodable OTLP protobuf"),
    "protobuf with invalid UTF-8": Junk(
        request(span(tid(1), sid(1))).SerializeToString().replace(b"op", b"\xc3\x28"),
        PROTOBUF,
        400,
        "UTF-8",
    ),
    "JSON garbage": Junk(b"{resourceSpans: nope", JSON, 400, "not valid JSON"),
    "JSON of the wrong shape": Junk(b'{"resourceSpans": 5}', JSON, 400, "resourceSpans"),
    "JSON nested too deeply": Junk(b"[" * 50_000, JSON, 400, "nested too deeply"),
    "wrong Content-Type": Junk(_VALID, {"Content-Type": "text/plain"}, 415, "Content-Type"),
    "no Content-Type": Junk(_VALID, {}, 415, "Content-Type"),
    "unsupported Content-Encoding": Junk(
        _VALID, {**PROTOBUF, "Content-Encoding": "br"}, 415, "unsupported Content-Encoding 'br'"
    ),
    "body over the limit": Junk(b"\x0a" * (LIMIT + 1), PROTOBUF, 413, f"exceeds the limit of {LIMIT} bytes"),
    "chunked body over the limit": Junk(
        (b"\x0a" * (LIMIT // 2),) * 3, PROTOBUF, 413, f"exceeds the limit of {LIMIT} bytes"
    ),
    "gzip bomb": Junk(
        gzip.compress(b"\0" * (100 * LIMIT)),
        {**PROTOBUF, "Content-Encoding": "gzip"},
        413,
        f"decompressed body exceeds the limit of {LIMIT} bytes",
    ),
    "broken gzip": Junk(b"\x1f\x8b not really gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "gzip"),
    "GET": Junk(b"", {}, 405, "", method="GET"),
    "unknown path": Junk(_VALID, PROTOBUF, 404, "", path="/v1/logs"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the stateless refusal checks (each answer depends on the request only)."""
    server = Server(tmp_path_factory.mktemp("junk"), extra={"distributor": {"max_request_bytes": LIMIT}})
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", JUNK)
def test_refused_request_answers_with_status_and_message(server: Server, name: str) -> None:
    junk = JUNK[name]
    reply = junk.send(server)
    assert reply.status == junk.status, reply.body
    if junk.status in (404, 405):
        assert reply.body, "a refusal should say why"
        if junk.status == 405:
            assert reply.headers.get("allow") == "POST"
        return
    status = reply.rpc_status()
    assert status.code == {400: 3, 413: 8, 415: 3}[junk.status]  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED
    assert junk.message in status.message
    as_json = junk.headers.get("Content-Type") == "application/json"
    assert reply.headers["content-type"] == ("application/json" if as_json else "application/x-protobuf")


def test_refusals_are_counted_once_per_request(server: Server) -> None:
    """``tracelake_receiver_requests_total`` counts every request exactly once, by outcome."""
    cases = {"invalid_request": "protobuf garbage", "bad_content_type": "wrong Content-Type"}
    cases |= {"bad_encoding": "unsupported Content-Encoding", "request_too_large": "gzip bomb"}
    for outcome, name in cases.items():
        before = requests_total(server, "otlp_http", outcome)
        assert JUNK[name].send(server).status == JUNK[name].status
        assert requests_total(server, "otlp_http", outcome) == before + 1, outcome
    before = requests_total(server, "otlp_grpc", "invalid_request")
    grpc_error(server, b"\xff\xff\xff")
    assert requests_total(server, "otlp_grpc", "invalid_request") == before + 1


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "undecodable OTLP protobuf"),
        (_VALID[: len(_VALID) // 2], grpc.StatusCode.INVALID_ARGUMENT, "undecodable OTLP protobuf"),
        (b"\x0a" * (LIMIT + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),  # gRPC's own message limit
    ],
    ids=["garbage", "cut short", "over the limit"],
)
def test_grpc_refusals_carry_a_code_and_message(
    server: Server, body: bytes, code: grpc.StatusCode, message: str
) -> None:
    error = grpc_error(server, body)
    assert error.code() == code
    assert message in error.details()


# ----- junk does not disturb accepted data


def test_accepted_data_survives_all_the_junk(tmp_path: Path) -> None:
    server = Server(tmp_path, extra={"distributor": {"max_request_bytes": LIMIT}}).start()
    try:
        before, after = good_payload(seed=1), good_payload(seed=2)
        assert send(server, before, PROTOBUF).status == 200
        for name, junk in JUNK.items():
            assert junk.send(server).status == junk.status, name
        for body in (b"\xff\xff\xff\xff", _VALID[:100], b"\x0a" * (LIMIT + 1)):
            grpc_error(server, body)
        assert send(server, after, PROTOBUF).status == 200
        assert ExportTraceServiceResponse.FromString(export_grpc(server, good_payload(seed=3))) == (
            ExportTraceServiceResponse()
        )
        assert requests_total(server, "otlp_http", "internal") == 0
        assert requests_total(server, "otlp_grpc", "internal") == 0
    finally:
        assert server.stop() == 0, server.log()
    expected = Counter(span_ids(before) + span_ids(after) + span_ids(good_payload(seed=3)))
    assert stored(server) == expected  # all of them, each once, and nothing else


# ----- spans refused one by one (partial success)


def _mixed_request() -> tuple[ExportTraceServiceRequest, list[tuple[bytes, bytes]], Counter[str]]:
    """Good spans among bad ones: (request, the good spans' ids, reason -> bad spans)."""
    now = time.time_ns()
    good = [
        span(tid(1), sid(1)),
        span(tid(1), sid(2), parent=sid(1)),
        span(tid(2), sid(3)),
        span(tid(2), sid(4), start=now - DAY),  # old, but well within max_span_age
    ]
    bad = {
        "invalid_trace_id": [span(tid(3)[:15], sid(5)), span(bytes(16), sid(6)), span(b"", sid(7))],
        "invalid_span_id": [span(tid(4), sid(8)[:7]), span(tid(4), bytes(8))],
        "invalid_parent_span_id": [span(tid(5), sid(9), parent=b"\x01\x02\x03")],
        "timestamp_out_of_range": [
            span(tid(6), sid(10), start=now + DAY),  # max_span_future is 1h
            span(tid(6), sid(11), start=now - 30 * DAY),  # max_span_age is 14 days
            span(tid(6), sid(12), start=1),
        ],
    }
    spans = [good[0], *bad["invalid_trace_id"], good[1], *bad["invalid_span_id"], good[2]]
    spans += [*bad["invalid_parent_span_id"], *bad["timestamp_out_of_range"], good[3]]
    reasons = Counter({reason: len(spans) for reason, spans in bad.items()})
    return request(*spans), [(s.trace_id, s.span_id) for s in good], reasons


@pytest.mark.parametrize("transport", ["http-protobuf", "http-json", "grpc"])
def test_bad_spans_are_refused_one_by_one(tmp_path: Path, transport: str) -> None:
    server = Server(tmp_path).start()
    try:
        mixed, good, reasons = _mixed_request()
        if transport == "grpc":
            response = ExportTraceServiceResponse.FromString(export_grpc(server, mixed.SerializeToString()))
        elif transport == "http-json":
            response = send(server, json.dumps(request_to_otlp_json(mixed)).encode(), JSON).export_response()
        else:
            response = send(server, mixed.SerializeToString(), PROTOBUF).export_response()
        assert response.partial_success.rejected_spans == sum(reasons.values())
        for reason in reasons:
            assert reason.replace("_", " ") in response.partial_success.error_message
        for reason, count in reasons.items():
            assert discarded(server, reason) == count
        received = server.metric("tracelake_distributor_spans_received_total", tenant="single-tenant")
        assert received == len(good)
    finally:
        assert server.stop() == 0, server.log()
    assert stored(server) == Counter(good)


def test_a_clean_request_has_no_partial_success(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        reply = send(server, good_payload(seed=5), PROTOBUF)
        assert not reply.export_response().HasField("partial_success")
    finally:
        server.stop()


# ----- absurd attribute sizes


def test_huge_attribute_values_are_stored_truncated_and_counted(tmp_path: Path) -> None:
    server = Server(tmp_path, extra={"overrides": {"max_attribute_bytes": MAX_ATTRIBUTE_BYTES}}).start()
    huge = "".join(chr(ord("a") + i % 26) for i in range(1024 * 1024))  # 1 MB, ASCII
    attributes = {"payload": huge, "http.url": "https://example.com/" + huge, "small": "kept"}
    try:
        reply = send(
            server, request(span(tid(7), sid(7), attributes=attributes)).SerializeToString(), PROTOBUF
        )
        assert not reply.export_response().HasField("partial_success"), "truncation refuses nothing"
        assert server.metric("tracelake_distributor_attributes_truncated_total", tenant="single-tenant") == 2
    finally:
        assert server.stop() == 0, server.log()
    (row,) = server.stored_spans().to_pylist()
    values = {a["key"]: a["str"] for a in row["attributes"]}
    assert values["payload"] == huge[:MAX_ATTRIBUTE_BYTES]
    assert values["small"] == "kept"
    assert row["http_url"] == attributes["http.url"][:MAX_ATTRIBUTE_BYTES]  # a dedicated column too


def test_multibyte_values_are_truncated_to_max_attribute_bytes(tmp_path: Path) -> None:
    server = Server(tmp_path, extra={"overrides": {"max_attribute_bytes": MAX_ATTRIBUTE_BYTES}}).start()
    huge = "é" * 500_000  # 1 MB of two-byte characters
    try:
        body = request(span(tid(8), sid(8), attributes={"payload": huge})).SerializeToString()
        assert send(server, body, PROTOBUF).status == 200
    finally:
        assert server.stop() == 0, server.log()
    (row,) = server.stored_spans().to_pylist()
    (value,) = [a["str"] for a in row["attributes"] if a["key"] == "payload"]
    assert huge.startswith(value)
    assert len(value.encode()) <= MAX_ATTRIBUTE_BYTES


def test_resource_and_event_attribute_values_are_truncated_too(tmp_path: Path) -> None:
    server = Server(tmp_path, extra={"overrides": {"max_attribute_bytes": MAX_ATTRIBUTE_BYTES}}).start()
    huge = "x" * 1024 * 1024
    sent = request(span(tid(9), sid(9)))
    sent.resource_spans[0].resource.attributes.add(key="host.name").value.string_value = huge
    event = sent.resource_spans[0].scope_spans[0].spans[0].events.add(name="e", time_unix_nano=time.time_ns())
    event.attributes.add(key="payload").value.string_value = huge
    try:
        assert send(server, sent.SerializeToString(), PROTOBUF).status == 200
    finally:
        assert server.stop() == 0, server.log()
    (row,) = server.stored_spans().to_pylist()
    assert len(row["resource"]) < 10 * MAX_ATTRIBUTE_BYTES, "the 1 MB resource attribute is stored whole"
    assert len(row["events"]) < 10 * MAX_ATTRIBUTE_BYTES, "the 1 MB event attribute is stored whole"


# ----- tenants are isolated


def test_one_tenants_junk_does_not_touch_another_tenant(tmp_path: Path) -> None:
    extra = {"multitenancy_enabled": True, "distributor": {"max_request_bytes": LIMIT}}
    server = Server(tmp_path, extra=extra).start()
    a, b = {"X-Scope-OrgID": "tenant-a"}, {"X-Scope-OrgID": "tenant-b"}
    try:
        b_first, b_last = good_payload(seed=10), good_payload(seed=11)
        assert send(server, b_first, {**PROTOBUF, **b}).status == 200
        a_good = good_payload(seed=12)
        assert send(server, a_good, {**PROTOBUF, **a}).status == 200
        mixed, a_mixed_good, reasons = _mixed_request()
        response = send(server, mixed.SerializeToString(), {**PROTOBUF, **a}).export_response()
        assert response.partial_success.rejected_spans == sum(reasons.values())
        for name, junk in JUNK.items():
            assert junk.send(server, tenant="tenant-a").status == junk.status, name
        assert grpc_error(server, b"\xff\xff", tenant="tenant-a").code() == grpc.StatusCode.INVALID_ARGUMENT
        assert send(server, b_last, {**PROTOBUF, **b}).status == 200
        for reason in reasons:
            assert discarded(server, reason, tenant="tenant-a") > 0
            assert discarded(server, reason, tenant="tenant-b") == 0
    finally:
        assert server.stop() == 0, server.log()
    assert stored(server, "tenant-b") == Counter(span_ids(b_first) + span_ids(b_last))
    assert stored(server, "tenant-a") == Counter(span_ids(a_good) + a_mixed_good)
    assert stored(server, "single-tenant") == Counter()
