"""Trace by ID over Tempo's HTTP API, against a real ``tracelake serve``: shapes as Tempo answers
(../shared/tempo-api-samples/), protobuf as Grafana decodes it, recent and stored data combined."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tests.samples import tempo_samples
from tests.server.harness import Server
from tests.server.sender import post
from tests.strategies import canonical_spans, only_trace
from tracelake.synth import SynthConfig, generate_request_bytes

HOLD = {"ingester": {"trace_idle_period": "1h", "max_block_duration": "1h"}}


def _field_1(message: bytes) -> bytes:
    """The payload of field 1 (length-delimited) of a protobuf message."""
    assert message[0] == 0x0A
    length, shift, pos = 0, 0, 1
    while True:
        byte = message[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return message[pos : pos + length]
        shift += 7


def get(server: Server, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["api"], timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        conn.close()


@pytest.fixture
def sent(tmp_path: Path):
    server = Server(tmp_path, receivers=("otlp_http",), extra=HOLD).start()
    payload = next(generate_request_bytes(SynthConfig(traces=20, traces_per_request=20, seed=5)))
    assert post(server.ports["otlp_http"], payload) == 200
    request = ExportTraceServiceRequest.FromString(payload)
    yield server, request
    if server.proc and server.proc.poll() is None:
        server.stop()


def without_empty_parts(trace: TracesData) -> TracesData:
    """Our API adds empty scope/status messages for Grafana; compare without them."""
    for rs in trace.resource_spans:
        for ss in rs.scope_spans:
            if not ss.scope.ByteSize():
                ss.ClearField("scope")
            for span in ss.spans:
                if not span.status.ByteSize():
                    span.ClearField("status")
    return trace


def _check_all_forms(server: Server, request: ExportTraceServiceRequest, trace_id: bytes) -> None:
    expected = canonical_spans(only_trace(request, trace_id))
    hex_id = trace_id.hex()
    status, content_type, body = get(server, f"/api/traces/{hex_id}", {"Accept": "application/protobuf"})
    assert (status, content_type) == (200, "application/protobuf")
    trace = TracesData.FromString(body)
    assert all(ss.HasField("scope") for rs in trace.resource_spans for ss in rs.scope_spans)
    assert all(s.HasField("status") for rs in trace.resource_spans for ss in rs.scope_spans for s in ss.spans)
    assert canonical_spans(without_empty_parts(trace)) == expected
    status, content_type, body = get(server, f"/api/v2/traces/{hex_id}", {"Accept": "application/protobuf"})
    assert status == 200 and body[0] == 0x0A  # TraceByIDResponse: the trace in field 1
    inner = TracesData()
    inner.ParseFromString(_field_1(body))
    assert canonical_spans(without_empty_parts(inner)) == expected
    status, _, body = get(server, f"/api/v2/traces/{hex_id}")
    document = json.loads(body)
    assert status == 200 and list(document) == ["trace"]
    span = document["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert base64.b64decode(span["traceId"]) == trace_id  # Tempo: base64 ids, enum names, int64 strings
    assert span["kind"].startswith("SPAN_KIND_") and isinstance(span["startTimeUnixNano"], str)
    status, _, body = get(server, f"/api/traces/{hex_id}")
    assert status == 200 and list(json.loads(body)) == ["batches"]


def test_trace_by_id_from_the_ingester_then_from_blocks(sent) -> None:
    server, request = sent
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    _check_all_forms(server, request, trace_id)  # still in memory
    assert server.stop() == 0
    server.start()  # now only in a block
    _check_all_forms(server, request, trace_id)


def test_json_shape_matches_tempo(sent) -> None:
    server, request = sent
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    ours = json.loads(get(server, f"/api/v2/traces/{trace_id.hex()}")[2])
    tempo = json.loads((tempo_samples() / "traces_v2_7ae894ed8dc75cf7baa1d32a77cc9488.json").read_text())
    ours_rs, tempo_rs = ours["trace"]["resourceSpans"][0], tempo["trace"]["resourceSpans"][0]
    assert set(ours_rs) == set(tempo_rs)
    assert set(ours_rs["scopeSpans"][0]) == set(tempo_rs["scopeSpans"][0])
    tempo_span_keys = {k for s in tempo_rs["scopeSpans"][0]["spans"] for k in s}
    ours_span_keys = {k for s in ours_rs["scopeSpans"][0]["spans"] for k in s}
    assert ours_span_keys <= tempo_span_keys | {
        "status",
        "flags",
        "traceState",
        "events",
        "droppedAttributesCount",
    }


def test_missing_and_malformed_ids_answer_as_tempo(sent) -> None:
    server, _ = sent
    missing = "0123456789abcdef0123456789abcdef"
    assert get(server, f"/api/traces/{missing}")[::2] == (404, b"")
    assert json.loads(get(server, f"/api/v2/traces/{missing}")[2]) == {"trace": {}}
    assert get(server, f"/api/v2/traces/{missing}", {"Accept": "application/protobuf"})[2] == b"\x0a\x00"
    status, _, body = get(server, "/api/traces/not-a-trace-id")
    assert (status, body.decode()) == (400, (tempo_samples() / "traces_v1_bad_id.txt").read_text().strip())
    status, _, body = get(server, "/api/traces/" + "ab" * 20)
    assert (status, body.decode()) == (
        400,
        (tempo_samples() / "traces_v1_bad_id_toolong.txt").read_text().strip(),
    )
    assert get(server, "/api/traces/abc123")[0] == 404  # short ids are left-padded, then looked up


def test_time_hints_prune_blocks(sent) -> None:
    server, request = sent
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    assert server.stop() == 0
    server.start()
    start_s = (
        min(
            s.start_time_unix_nano for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
        )
        // 10**9
    )
    around = f"start={start_s - 60}&end={start_s + 7200}"
    assert get(server, f"/api/traces/{trace_id.hex()}?{around}")[0] == 200
    assert get(server, f"/api/traces/{trace_id.hex()}?start=1000&end=2000")[0] == 404
    assert get(server, f"/api/traces/{trace_id.hex()}?start=2000&end=1000")[0] == 400


def test_tenants_see_only_their_own_traces(tmp_path: Path) -> None:
    server = Server(tmp_path, receivers=("otlp_http",), extra={"multitenancy_enabled": True, **HOLD}).start()
    try:
        payload = next(generate_request_bytes(SynthConfig(traces=2, traces_per_request=2, seed=9)))
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=30)
        conn.request(
            "POST", "/v1/traces", payload, {"Content-Type": "application/x-protobuf", "X-Scope-OrgID": "acme"}
        )
        assert conn.getresponse().status == 200
        conn.close()
        trace_id = (
            ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans[0].trace_id
        )
        path = f"/api/traces/{trace_id.hex()}"
        assert get(server, path)[0] == 401
        assert get(server, path, {"X-Scope-OrgID": "other"})[0] == 404
        assert get(server, path, {"X-Scope-OrgID": "acme"})[0] == 200
        assert get(server, path, {"X-Scope-OrgID": "other|acme"})[0] == 200
    finally:
        server.stop()


def test_gzip_when_the_client_accepts_it(sent) -> None:
    """Grafana sends Accept-Encoding: gzip; Tempo answers compressed, and so do we."""
    import gzip

    server, request = sent
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    status, _, plain = get(server, f"/api/v2/traces/{trace_id}")
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["api"], timeout=30)
    conn.request("GET", f"/api/v2/traces/{trace_id}", headers={"Accept-Encoding": "gzip, deflate"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert status == response.status == 200
    assert response.getheader("content-encoding") == "gzip"
    assert len(body) < len(plain) and gzip.decompress(body) == plain
    assert get(server, "/api/echo", {"Accept-Encoding": "gzip"})[2] == b"echo"  # small: as is
