"""``/api/search`` against a real ``tracelake serve``: one data set flushed to blocks, another still in
the ingester. Expected answers are computed here from the OTLP requests that were sent."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.querier.test_trace_by_id_api import HOLD, get
from tests.server.harness import Server
from tests.server.sender import post
from tracelake.synth import SynthConfig, generate_request_bytes

NOW_S = int(time.time())


def _traces(request: ExportTraceServiceRequest) -> dict[bytes, list[tuple]]:
    """trace id -> [(service, span, start, end)]."""
    out: dict[bytes, list[tuple]] = {}
    for rs in request.resource_spans:
        service = next(
            (kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), ""
        )
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.setdefault(span.trace_id, []).append((service, span, span.start_time_unix_nano))
    return out


def _newest(traces: dict[bytes, list[tuple]], ids: set[bytes], limit: int) -> list[str]:
    start = {t: min(s[2] for s in traces[t]) for t in ids}
    ordered = sorted(ids, key=lambda t: (-start[t], t))[:limit]
    return [t.hex().lstrip("0") for t in ordered]


def _send(server: Server, seed: int, traces: int, tenant: str | None = None) -> ExportTraceServiceRequest:
    payload = next(generate_request_bytes(SynthConfig(traces=traces, traces_per_request=traces, seed=seed)))
    headers = {"Content-Type": "application/x-protobuf"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=30)
        conn.request("POST", "/v1/traces", payload, headers)
        assert conn.getresponse().status == 200
        conn.close()
    else:
        assert post(server.ports["otlp_http"], payload) == 200
    return ExportTraceServiceRequest.FromString(payload)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    """(server, traces in blocks, traces in the ingester)."""
    server = Server(tmp_path_factory.mktemp("search"), receivers=("otlp_http",), extra=HOLD).start()
    try:
        stored = _traces(_send(server, seed=42, traces=300))
        assert server.stop() == 0  # flushes everything to blocks
        server.start()
        recent = _traces(_send(server, seed=777, traces=60))
        yield server, stored, recent
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def search(server: Server, headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict | str]:
    status, content_type, body = get(server, "/api/search?" + urlencode(params), headers)
    if status != 200:
        assert content_type.startswith("text/plain")
        return status, body.decode()
    assert content_type == "application/json"
    return status, json.loads(body)


RANGE = {"start": str(NOW_S - 7200), "end": str(NOW_S + 7200)}


def test_tag_search_over_blocks_and_recent_data_newest_first(loaded) -> None:
    server, stored, recent = loaded
    everything = {**stored, **recent}
    want = {t for t, spans in everything.items() if any(s[0] == "cart" for s in spans)}
    status, body = search(server, tags="service.name=cart", limit="25", **RANGE)
    assert status == 200
    assert [t["traceID"] for t in body["traces"]] == _newest(everything, want, 25)
    first = body["traces"][0]
    assert set(first) >= {"traceID", "rootServiceName", "startTimeUnixNano"}
    assert "spanSets" not in first  # a tag search answers as Tempo's: no span sets
    assert isinstance(first["startTimeUnixNano"], str)
    assert body["metrics"]["totalBlocks"] >= 1


def test_without_a_range_only_recent_data_is_searched(loaded) -> None:
    server, _, recent = loaded
    status, body = search(server, limit="1000")
    assert status == 200
    assert [t["traceID"] for t in body["traces"]] == _newest(recent, set(recent), 1000)


def test_traceql_returns_span_sets_with_matched_spans(loaded) -> None:
    server, stored, recent = loaded
    everything = {**stored, **recent}

    def errors(spans):
        return [
            s
            for s in spans
            if any(kv.key == "http.status_code" and kv.value.int_value == 500 for kv in s[1].attributes)
        ]

    want = {t for t, spans in everything.items() if errors(spans)}
    assert want, "the data set has HTTP 500 spans"
    status, body = search(server, q="{ .http.status_code = 500 }", limit="1000", spss="2", **RANGE)
    assert status == 200
    assert {t["traceID"] for t in body["traces"]} == {t.hex().lstrip("0") for t in want}
    by_id = {t.hex().lstrip("0"): t for t in want}
    for trace in body["traces"]:
        matching = errors(everything[by_id[trace["traceID"]]])
        (span_set,) = trace["spanSets"]
        assert trace["spanSet"] == span_set
        assert span_set["matched"] == len(matching)
        assert len(span_set["spans"]) == min(2, len(matching))
        ids = {s[1].span_id.hex() for s in matching}
        for span in span_set["spans"]:
            assert span["spanID"] in ids
            assert span["attributes"] == [{"key": "http.status_code", "value": {"intValue": "500"}}]
            assert int(span["durationNanos"]) >= 0
        assert sum(s["spanCount"] for s in trace["serviceStats"].values()) == len(
            everything[by_id[trace["traceID"]]]
        )


def test_duration_bounds_and_limit(loaded) -> None:
    server, _, _ = loaded
    status, body = search(server, minDuration="100ms", maxDuration="2s", limit="7", **RANGE)
    assert status == 200
    assert 0 < len(body["traces"]) <= 7
    assert all(100 <= t.get("durationMs", 0) <= 2000 for t in body["traces"])
    starts = [int(t["startTimeUnixNano"]) for t in body["traces"]]
    assert starts == sorted(starts, reverse=True)


def test_trace_level_intrinsics_and_spanset_operators(loaded) -> None:
    server, _, _ = loaded
    status, body = search(
        server,
        q='{ rootServiceName = "frontend" } && { kind = client && duration > 1ms }',
        limit="5",
        **RANGE,
    )
    assert status == 200 and body["traces"]
    assert all(t["rootServiceName"] == "frontend" for t in body["traces"])
    status, body = search(server, q="{ traceDuration > 100s }", **RANGE)
    assert status == 200 and body["traces"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "{ .http.status_code = "}, "invalid TraceQL query: parse error at line 1, col 23"),
        ({"q": '{ duration = "x" }'}, "binary operations must operate on the same type"),
        ({"q": '{ name =~ "(" }'}, "invalid regular expression"),
        ({"minDuration": "fast"}, "invalid minDuration 'fast'"),
        ({"limit": "-3"}, "invalid limit"),
        ({"start": "20", "end": "10"}, "end must be after start"),
        ({"tags": "=x"}, "invalid tags"),
    ],
)
def test_bad_requests_are_400_with_the_reason(loaded, params: dict, message: str) -> None:
    server, _, _ = loaded
    status, body = search(server, **params)
    assert status == 400
    assert message in body


def test_tenants_see_only_their_own_traces(tmp_path: Path) -> None:
    server = Server(tmp_path, receivers=("otlp_http",), extra={"multitenancy_enabled": True, **HOLD}).start()
    try:
        a = _traces(_send(server, seed=1, traces=5, tenant="acme"))
        b = _traces(_send(server, seed=2, traces=4, tenant="other"))

        def ids(tenant_header: str) -> set[str]:
            status, body = search(server, {"X-Scope-OrgID": tenant_header}, limit="100")
            assert status == 200
            return {t["traceID"] for t in body["traces"]}

        assert ids("acme") == {t.hex().lstrip("0") for t in a}
        assert ids("other") == {t.hex().lstrip("0") for t in b}
        assert ids("acme|other") == {t.hex().lstrip("0") for t in {**a, **b}}
        assert search(server, limit="1")[0] == 401
    finally:
        server.stop()


def test_requests_are_counted_by_route_and_status(loaded) -> None:
    server, _, _ = loaded
    name = "tracelake_request_duration_seconds_count"
    before_bad = server.metric(name, route="api_search", status_code="400")
    before_ok = server.metric(name, route="api_search", status_code="200")
    assert search(server, q="{ nope")[0] == 400
    assert search(server, limit="1", **RANGE)[0] == 200
    assert server.metric(name, route="api_search", status_code="400") == before_bad + 1
    assert server.metric(name, route="api_search", status_code="200") == before_ok + 1
    assert server.metric("tracelake_blocklist_length", tenant="single-tenant") >= 1


def test_an_unreadable_block_is_reported_not_hidden(tmp_path: Path) -> None:
    """A damaged data.parquet gives a 500 naming the block (and a log line), not a traceback."""
    server = Server(tmp_path, receivers=("otlp_http",), extra=HOLD).start()
    try:
        sent = _send(server, seed=3, traces=20)
        assert server.stop() == 0
        (data,) = (tmp_path / "data").glob("single-tenant/*/data.parquet")
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        server.start()
        status, body = search(server, q="{ .http.status_code = 500 }", **RANGE)
        assert status == 500
        assert "unreadable block" in body and data.parent.name in body
        assert search(server, limit="5")[0] == 200  # recent data still answers
        # A lookup in that block fails the same way, and its log line names the trace and tenant.
        trace_id = sent.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        request = urllib.request.Request(server.url("api", f"/api/traces/{trace_id}"))
        request.add_header("X-Scope-OrgID", "single-tenant")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=30)
        assert failed.value.code == 500
        (line,) = [x for x in server.log().splitlines() if "unreadable block" in x and "traceID=" in x]
        assert f"traceID={trace_id}" in line and "tenant=single-tenant" in line
    finally:
        server.stop()
