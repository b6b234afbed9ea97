"""Per-tenant limits of a real ``tracelake serve``: tenants, ingestion rate, trace size, runtime overrides.

Rates are set so that the outcome never depends on how fast the test runs: a bucket refilling at one
byte per second cannot refill a request's worth of bytes within a test, and a burst smaller than a
request can never be passed at all.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.server.clients import Reply, export_grpc, grpc_error, post, requests_total, stored
from tests.server.harness import Server
from tests.server.sender import span_ids
from tracelake.synth import SynthConfig, generate_request_bytes

PROTOBUF = "application/x-protobuf"
MULTITENANT = {"multitenancy_enabled": True}
GENEROUS = {"ingestion_rate_limit_bytes": 50_000_000, "ingestion_burst_size_bytes": 50_000_000}


def payloads(seed: int) -> Callable[[], bytes]:
    """A source of distinct small requests (never the same spans twice)."""
    source = generate_request_bytes(SynthConfig(traces=10_000, traces_per_request=2, seed=seed))
    return lambda: next(source)


def write_overrides(path: Path, overrides: dict[str, dict[str, int]]) -> None:
    """Replace the overrides file atomically, as a config-map update does: never seen half-written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"overrides": overrides}))
    os.replace(tmp, path)


def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Wait for something the server does on its own schedule (never asserts how long it took)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# ----- tenants


def test_without_a_tenant_multitenancy_answers_401_and_unauthenticated(tmp_path: Path) -> None:
    server = Server(tmp_path, extra=MULTITENANT).start()
    next_payload = payloads(seed=1)
    accepted: list[bytes] = []
    try:
        for tenant in (None, "", "   "):
            reply = post(server, next_payload(), tenant)
            assert reply.status == 401
            status = reply.rpc_status()
            assert status.code == 16  # UNAUTHENTICATED
            assert "X-Scope-OrgID" in status.message
        json_reply = post(server, b'{"resourceSpans": []}', content_type="application/json")
        assert json_reply.status == 401 and json_reply.headers["content-type"] == "application/json"
        error = grpc_error(server, next_payload())
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "X-Scope-OrgID" in error.details()
        assert post(server, next_payload(), "a/b").status == 400  # a tenant must be usable as a path part

        accepted += [next_payload(), next_payload()]
        assert post(server, accepted[0], "team-1").status == 200
        assert export_grpc(server, accepted[1], "team-1") == b""  # x-scope-orgid metadata names the tenant
        assert requests_total(server, "otlp_http", "no_tenant") == 4
        assert requests_total(server, "otlp_grpc", "no_tenant") == 1
    finally:
        assert server.stop() == 0, server.log()
    assert stored(server, "team-1") == Counter(span_ids(accepted[0]) + span_ids(accepted[1]))
    assert stored(server, "single-tenant") == Counter()


# ----- ingestion rate


def test_rate_limited_tenant_gets_429_with_retry_after_others_unaffected(tmp_path: Path) -> None:
    next_payload = payloads(seed=2)
    first, second = next_payload(), next_payload()
    overrides = tmp_path / "overrides.yaml"
    # `first` fits the burst; `second` needs half its size more than is left, at one byte per second.
    slow = {"ingestion_rate_limit_bytes": 1, "ingestion_burst_size_bytes": len(first) + len(second) // 2}
    write_overrides(overrides, {"slow": slow})
    extra = {**MULTITENANT, "overrides": {**GENEROUS, "per_tenant_override_config": str(overrides)}}
    server = Server(tmp_path, extra=extra).start()
    fast: list[bytes] = []
    try:
        assert post(server, first, "slow").status == 200
        reply = post(server, second, "slow")
        assert reply.status == 429
        assert 1 <= int(reply.headers["retry-after"]) <= len(second)
        status = reply.rpc_status()
        assert status.code == 8  # RESOURCE_EXHAUSTED
        assert "rate limit" in status.message and "slow" in status.message
        error = grpc_error(server, second, "slow")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in error.details()
        for _ in range(5):
            fast.append(next_payload())
            assert post(server, fast[-1], "fast").status == 200
        fast.append(next_payload())
        assert export_grpc(server, fast[-1], "fast") == b""
        for receiver in ("otlp_http", "otlp_grpc"):
            assert requests_total(server, receiver, "rate_limited") == 1, receiver
    finally:
        assert server.stop() == 0, server.log()
    assert stored(server, "slow") == Counter(span_ids(first))
    assert stored(server, "fast") == Counter(ids for body in fast for ids in span_ids(body))


def test_a_request_larger_than_the_burst_can_never_pass(tmp_path: Path) -> None:
    small = single_span_request(trace=1, span=1, pad=0)
    big = next(generate_request_bytes(SynthConfig(traces=5, traces_per_request=5, seed=3)))
    burst = 4 * len(small)
    assert len(big) > burst
    limits = {"ingestion_rate_limit_bytes": 1, "ingestion_burst_size_bytes": burst}
    server = Server(tmp_path, extra={"overrides": limits}).start()
    try:
        for _ in range(2):
            reply = post(server, big)
            assert reply.status == 429
            message = reply.rpc_status().message
            assert "can never pass" in message and f"request of {len(big)} bytes" in message
        assert "can never pass" in grpc_error(server, big).details()
        assert post(server, small).status == 200, "a refused request must not use up the bucket"
    finally:
        assert server.stop() == 0, server.log()
    assert stored(server, "single-tenant") == Counter(span_ids(small))


# ----- trace size


def single_span_request(trace: int, span: int, pad: int, *more: tuple[int, int]) -> bytes:
    """A request of spans (trace, span) of one fixed size each (fixed-width ids and times, equal padding)."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    start = time.time_ns() - 1_000_000_000
    for t, s in ((trace, span), *more):
        out = Span(
            trace_id=t.to_bytes(16, "big"),
            span_id=s.to_bytes(8, "big"),
            name="op",
            start_time_unix_nano=start,
            end_time_unix_nano=start + 1000,
        )
        if pad:
            out.attributes.add(key="pad").value.string_value = "x" * pad
        spans.append(out)
    return request.SerializeToString()


def test_spans_beyond_max_bytes_per_trace_are_refused_as_trace_too_large(tmp_path: Path) -> None:
    # Each request: one span of the big trace 1 and one of a fresh trace, both the same size, so the
    # big trace grows by half a request each time: the limit admits two of its spans but not three.
    bodies = [single_span_request(1, i, 400, (100 + i, i)) for i in range(1, 5)]
    assert len({len(b) for b in bodies}) == 1
    limit = len(bodies[0]) * 5 // 4
    extra = {
        "overrides": {"max_bytes_per_trace": limit},
        "ingester": {"trace_idle_period": "1h", "max_block_duration": "1h"},  # the trace stays live
    }
    server = Server(tmp_path, extra=extra).start()
    try:
        responses = []
        for body in bodies:
            reply = post(server, body)
            assert reply.status == 200
            responses.append(ExportTraceServiceResponse.FromString(reply.body))
        assert [r.partial_success.rejected_spans for r in responses] == [0, 0, 1, 1]
        assert "trace too large" in responses[2].partial_success.error_message
        too_large = server.metric(
            "tracelake_discarded_spans_total", tenant="single-tenant", reason="trace_too_large"
        )
        assert too_large == 2
    finally:
        assert server.stop() == 0, server.log()
    big = (1).to_bytes(16, "big")
    expected = [(big, i.to_bytes(8, "big")) for i in (1, 2)]
    expected += [((100 + i).to_bytes(16, "big"), i.to_bytes(8, "big")) for i in range(1, 5)]
    assert stored(server, "single-tenant") == Counter(expected)


# ----- overrides reloaded at runtime


def test_per_tenant_overrides_are_reloaded_without_a_restart(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    write_overrides(overrides, {"x": GENEROUS})
    extra = {
        **MULTITENANT,
        "overrides": {
            **GENEROUS,
            "per_tenant_override_config": str(overrides),
            "per_tenant_override_period": "200ms",
        },
    }
    server = Server(tmp_path, extra=extra).start()
    next_payload = payloads(seed=4)
    accepted: dict[str, list[bytes]] = {"x": [], "y": []}
    last: dict[str, Reply] = {}

    def send_as(tenant: str) -> Reply:
        body = next_payload()
        reply = last[tenant] = post(server, body, tenant)
        if reply.status == 200:
            accepted[tenant].append(body)
        return reply

    try:
        assert send_as("x").status == 200
        write_overrides(overrides, {"x": {"ingestion_rate_limit_bytes": 1, "ingestion_burst_size_bytes": 64}})
        until(lambda: send_as("x").status == 429, "the tiny limit to apply")
        assert "can never pass" in last["x"].rpc_status().message
        assert send_as("y").status == 200, "a tenant not in the file keeps the defaults"

        overrides.write_text("overrides: [this is: not yaml")
        until(lambda: "overrides file invalid" in server.log(), "the broken file to be read")
        assert send_as("x").status == 429, "a broken file keeps the last good limits"

        write_overrides(overrides, {"x": GENEROUS})
        until(lambda: send_as("x").status == 200, "the generous limit to apply again")
    finally:
        assert server.stop() == 0, server.log()
    assert len(accepted["x"]) >= 2
    for tenant, bodies in accepted.items():
        assert stored(server, tenant) == Counter(ids for body in bodies for ids in span_ids(body))
