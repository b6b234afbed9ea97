"""The OpenTelemetry SDK's own exporters send to ``tracelake serve``; the blocks hold exactly those spans."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.server.harness import Server


def _emit(exporter, service: str, traces: int = 30) -> list:
    """Make ``traces`` small traces through a real SDK pipeline; returns the SDK's finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e", "1.2.3")
    for i in range(traces):
        with tracer.start_as_current_span(f"GET /items/{i}", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.method", "GET")
            root.set_attribute("http.status_code", 200 + i % 2 * 300)
            root.set_attribute("retries", i)
            root.set_attribute("ratio", i / 7)
            root.set_attribute("tags", ["a", "b"])
            with tracer.start_as_current_span("db query", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "postgresql")
                child.add_event("rows fetched", {"rows": i})
                if i % 5 == 0:
                    child.set_status(Status(StatusCode.ERROR, "timeout"))
    provider.shutdown()
    return memory.get_finished_spans()


def _ids(spans) -> Counter:
    return Counter(
        (s.context.trace_id.to_bytes(16, "big"), s.context.span_id.to_bytes(8, "big")) for s in spans
    )


def test_sdk_exporters_land_every_span_exactly_once(tmp_path: Path) -> None:
    server = Server(tmp_path, receivers=("otlp_http", "otlp_grpc", "zipkin")).start()
    try:
        sent = _emit(HTTPExporter(endpoint=server.url("otlp_http", "/v1/traces")), "over-http")
        sent += _emit(
            GRPCExporter(endpoint=f"127.0.0.1:{server.ports['otlp_grpc']}", insecure=True), "over-grpc"
        )
        sent += _emit(ZipkinExporter(endpoint=server.url("zipkin", "/api/v2/spans")), "over-zipkin")
        assert server.metric("tracelake_distributor_spans_received_total", tenant="single-tenant") == len(
            sent
        )
    finally:
        assert server.stop() == 0, server.log()
    stored = server.stored_spans()
    got = Counter(zip(stored["trace_id"].to_pylist(), stored["span_id"].to_pylist(), strict=True))
    assert got == _ids(sent)
    assert all(n == 1 for n in got.values())
    rows = {(r["span_id"], r["name"]): r for r in stored.to_pylist()}
    for span in sent:
        row = rows[(span.context.span_id.to_bytes(8, "big"), span.name)]
        service = span.resource.attributes["service.name"]
        assert row["service_name"] == service
        assert row["status_code"] == span.status.status_code.value
        assert row["kind"] == span.kind.value + 1  # the SDK's SpanKind counts from INTERNAL = 0
        if service == "over-zipkin":  # Zipkin has microseconds and string tags only
            assert abs(row["start_time_unix_nano"] - span.start_time) < 1000
            continue
        assert row["start_time_unix_nano"] == span.start_time and row["end_time_unix_nano"] == span.end_time
        assert row["scope_name"] == "e2e" and row["scope_version"] == "1.2.3"
        if span.name.startswith("GET"):
            assert (
                row["http_method"] == "GET" and row["http_status_code"] == span.attributes["http.status_code"]
            )


def test_graceful_shutdown_flushes_and_a_restart_replays_nothing_twice(tmp_path: Path) -> None:
    server = Server(
        tmp_path, extra={"ingester": {"max_block_duration": "1h", "trace_idle_period": "1h"}}
    ).start()
    sent = _emit(HTTPExporter(endpoint=server.url("otlp_http", "/v1/traces")), "svc", traces=10)
    assert server.stored_spans().num_rows == 0  # still in memory: nothing is due yet
    assert server.stop(timeout=30) == 0
    assert server.stored_spans().num_rows == len(sent)
    server.start()  # the WAL replays nothing twice
    server.stop()
    assert server.stored_spans().num_rows == len(sent)


def test_shutdown_is_bounded_when_the_backend_is_down(tmp_path: Path, s3_endpoint) -> None:
    """Tempo 2.7 hangs on SIGTERM when it cannot flush; we exit in time and lose nothing."""
    from tests.conftest import free_port

    dead = {
        "backend": "s3",
        "s3": {
            "bucket": s3_endpoint.bucket,
            "endpoint": f"127.0.0.1:{free_port()}",  # nothing listens there
            "access_key": s3_endpoint.access_key,
            "secret_key": s3_endpoint.secret_key,
            "insecure": True,
            "forcepathstyle": True,
            "prefix": "bounded",
            "max_retries": 10,
        },
    }
    server = Server(
        tmp_path,
        receivers=("otlp_http",),
        extra={"storage": {"trace": dead}, "server": {"graceful_shutdown_timeout": "3s"}},
    ).start()
    sent = _emit(HTTPExporter(endpoint=server.url("otlp_http", "/v1/traces")), "svc", traces=5)
    started = time.monotonic()
    assert server.stop(timeout=20) == 0
    assert time.monotonic() - started < 10, "shutdown must respect graceful_shutdown_timeout"
    # Back with a reachable store: the WAL is replayed and every span lands exactly once.
    working = {**dead, "s3": {**dead["s3"], "endpoint": s3_endpoint.url}}
    server.extra = {"storage": {"trace": working}}
    server.__post_init__()
    server.start()
    assert server.stop() == 0
    stored = server.stored_spans()
    assert Counter(zip(stored["trace_id"].to_pylist(), stored["span_id"].to_pylist(), strict=True)) == _ids(
        sent
    )
