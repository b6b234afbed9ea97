"""The synthetic trace generator: deterministic, the requested shape, valid trees, realistic content."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracelake.synth import SERVICE_NAMES, SynthConfig, generate_request_bytes, generate_requests

START = 1_700_000_000 * 10**9


def _cfg(**kw: object) -> SynthConfig:
    kw.setdefault("start_unix_nano", START)
    return SynthConfig(**kw)  # type: ignore[arg-type]


def _spans(requests: list[ExportTraceServiceRequest]) -> Iterator[tuple[str, str, Span]]:
    """(service.name, scope name, span) for every span."""
    for request in requests:
        for rs in request.resource_spans:
            service = next(kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield service, ss.scope.name, span


@pytest.fixture(scope="module")
def default_requests() -> list[ExportTraceServiceRequest]:
    return list(generate_requests(_cfg(traces=1000)))


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    cfg = _cfg(traces=120, traces_per_request=50, seed=3)
    first = list(generate_request_bytes(cfg))
    assert list(generate_request_bytes(cfg)) == first
    assert list(generate_request_bytes(_cfg(traces=120, traces_per_request=50, seed=4))) != first


def test_bytes_are_the_canonical_serialization() -> None:
    """Hand-encoded bytes equal what protobuf itself would write for the parsed message."""
    for payload in generate_request_bytes(_cfg(traces=300, error_rate=0.5, seed=1)):
        assert ExportTraceServiceRequest.FromString(payload).SerializeToString() == payload


def test_requested_counts(default_requests: list[ExportTraceServiceRequest]) -> None:
    assert len(default_requests) == 10
    traces: dict[bytes, list[Span]] = collections.defaultdict(list)
    for request in default_requests:
        ids = {span.trace_id for _, _, span in _spans([request])}
        assert len(ids) == 100
        for _, _, span in _spans([request]):
            traces[span.trace_id].append(span)
    assert len(traces) == 1000
    sizes = collections.Counter(len(spans) for spans in traces.values())
    assert set(sizes) == set(range(5, 16))  # uniform over the inclusive range
    partial = list(generate_requests(_cfg(traces=250, traces_per_request=100, spans_per_trace=(1, 1))))
    assert [sum(1 for _ in _spans([r])) for r in partial] == [100, 100, 50]


def test_span_trees_are_valid(default_requests: list[ExportTraceServiceRequest]) -> None:
    traces: dict[bytes, list[tuple[str, Span]]] = collections.defaultdict(list)
    for service, _, span in _spans(default_requests):
        assert len(span.trace_id) == 16 and len(span.span_id) == 8 and any(span.span_id)
        traces[span.trace_id].append((service, span))
    window = (START, START + 3600 * 10**9)
    for spans in traces.values():
        by_id = {span.span_id: span for _, span in spans}
        assert len(by_id) == len(spans)
        roots = [(service, span) for service, span in spans if not span.parent_span_id]
        assert len(roots) == 1
        root_service, root = roots[0]
        assert root_service == "frontend" and root.kind == Span.SPAN_KIND_SERVER
        assert window[0] <= root.start_time_unix_nano < window[1]
        for _, span in spans:
            assert span.start_time_unix_nano < span.end_time_unix_nano
            if span.parent_span_id:
                parent = by_id[span.parent_span_id]  # every parent is in the trace
                assert parent.start_time_unix_nano <= span.start_time_unix_nano
                assert span.end_time_unix_nano <= parent.end_time_unix_nano
                if span.kind == Span.SPAN_KIND_SERVER:  # a remote call: the caller's CLIENT span
                    assert parent.kind == Span.SPAN_KIND_CLIENT


def test_attributes_per_span() -> None:
    for n in (0, 3, 10, 25):
        requests = list(generate_requests(_cfg(traces=60, attributes_per_span=n, error_rate=0.5)))
        for _, _, span in _spans(requests):
            keys = [kv.key for kv in span.attributes]
            assert len(keys) == n and len(set(keys)) == n


def test_services_resources_and_scopes(default_requests: list[ExportTraceServiceRequest]) -> None:
    services = collections.Counter(service for service, _, _ in _spans(default_requests))
    assert set(services) == set(SERVICE_NAMES[:5])
    assert min(services.values()) > 0.02 * sum(services.values())  # every service carries real load
    resource_keys = {
        "service.name",
        "service.version",
        "service.namespace",
        "deployment.environment",
        "host.name",
        "k8s.namespace.name",
        "k8s.pod.name",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
    }
    pods: dict[str, set[str]] = collections.defaultdict(set)
    for request in default_requests:
        for rs in request.resource_spans:
            attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            assert resource_keys <= attrs.keys()
            pods[attrs["service.name"]].add(attrs["k8s.pod.name"])
            for ss in rs.scope_spans:
                assert ss.scope.name and ss.spans
    assert all(2 <= len(p) <= 5 for p in pods.values())
    for count in (1, 8, 17):
        requests = list(generate_requests(_cfg(traces=300, services=count)))
        seen = {service for service, _, _ in _spans(requests)}
        assert seen <= {*SERVICE_NAMES, *(f"service-{i}" for i in range(1, count + 1))}
        assert len(seen) >= min(count, 5) and "frontend" in seen


def test_realistic_attribute_values(default_requests: list[ExportTraceServiceRequest]) -> None:
    values: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    kinds: collections.Counter[int] = collections.Counter()
    for _, _, span in _spans(default_requests):
        kinds[span.kind] += 1
        for kv in span.attributes:
            v = kv.value
            values[kv.key][v.string_value if v.HasField("string_value") else str(v.int_value)] += 1
    assert {Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL} <= set(kinds)
    for key in (
        "http.method",
        "http.request.method",
        "http.route",
        "db.system",
        "db.statement",
        "rpc.method",
    ):
        assert key in values, key
    assert values["http.url"] or values["url.full"]
    codes = values["http.status_code"] + values["http.response.status_code"]
    assert codes.most_common(1)[0][0] == "200"
    assert any(c.startswith("4") for c in codes) and any(c.startswith("5") for c in codes)
    # High-cardinality values (ids in URLs, SQL parameters) next to low-cardinality ones.
    assert len(values["db.statement"]) > 100 and len(values["http.route"]) < 30
    assert len(values["http.request.method"]) <= 5


def test_errors_and_events() -> None:
    requests = list(generate_requests(_cfg(traces=2000, error_rate=0.05, seed=5)))
    spans = [span for _, _, span in _spans(requests)]
    failed_traces = {s.trace_id for s in spans if s.status.code == Status.STATUS_CODE_ERROR}
    assert 0.03 < len(failed_traces) / 2000 < 0.07
    for span in spans:
        exceptions = [e for e in span.events if e.name == "exception"]
        if span.status.code == Status.STATUS_CODE_ERROR:
            assert span.status.message
        else:
            assert not span.HasField("status") and not exceptions
        for event in exceptions:
            keys = {kv.key for kv in event.attributes}
            assert keys == {"exception.type", "exception.message", "exception.stacktrace"}
            assert span.start_time_unix_nano <= event.time_unix_nano <= span.end_time_unix_nano
    with_exception = {s.trace_id for s in spans if any(e.name == "exception" for e in s.events)}
    assert with_exception == failed_traces  # every failure has the span that raised
    other_events = sum(1 for s in spans if any(e.name != "exception" for e in s.events))
    assert 0.03 < other_events / len(spans) < 0.07
    assert any(s.trace_state for s in spans)


def test_generation_speed_and_size() -> None:
    """Not a benchmark (CI machines vary), but report the figures and catch gross regressions."""
    cfg = _cfg(traces=3000)
    started = time.process_time()
    payloads = list(generate_request_bytes(cfg))
    elapsed = time.process_time() - started
    spans = sum(1 for _ in _spans([ExportTraceServiceRequest.FromString(p) for p in payloads]))
    rate = spans / max(elapsed, 1e-9)
    size = sum(map(len, payloads)) / spans
    print(f"\nsynth: {rate:,.0f} spans/s (CPU), {size:.0f} OTLP protobuf bytes/span")
    assert rate > 20_000
    assert 250 < size < 700
