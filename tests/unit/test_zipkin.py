"""Zipkin v1/v2 bodies -> OTLP: field-by-field checks against the collector's receiver rules."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from opentelemetry.exporter.zipkin.json.v1 import JsonV1Encoder
from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder
from opentelemetry.exporter.zipkin.node_endpoint import NodeEndpoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Status as SdkStatus
from opentelemetry.trace import StatusCode as SdkStatusCode

from tracelake.codec import zipkin_proto
from tracelake.codec.zipkin import zipkin_v1_json_to_otlp, zipkin_v2_json_to_otlp, zipkin_v2_proto_to_otlp
from tracelake.errors import InvalidInputError

TRACE_128 = "5af7183fb1d4cf5f4b7a3d9e8c1f2a6b"
TRACE_64 = "4b7a3d9e8c1f2a6b"
SPAN_ID = "b7ad6b7169203331"
PARENT_ID = "0102030405060708"
TS_US = 1_700_000_000_123_456


# ---------------------------------------------------------------------------------------------------------
# helpers


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def _all_spans(request: Any) -> list[Span]:
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def _only_span(request: Any) -> Span:
    spans = _all_spans(request)
    assert len(spans) == 1
    return spans[0]


def _groups(request: Any) -> list[tuple[str, list[int]]]:
    """(service.name, last byte of each span id) per ResourceSpans, in order."""
    return [
        (
            _attrs(rs.resource.attributes)["service.name"],
            [span.span_id[-1] for ss in rs.scope_spans for span in ss.spans],
        )
        for rs in request.resource_spans
    ]


def _v2(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE_128, "id": SPAN_ID, "name": "get /cart", "timestamp": TS_US, "duration": 1500}
    span.update(fields)
    return span


def _v2_json(*spans: dict) -> bytes:
    return json.dumps(list(spans)).encode()


def _convert_v2(**fields: Any) -> Span:
    return _only_span(zipkin_v2_json_to_otlp(_v2_json(_v2(**fields))))


def _v1_json(*spans: dict) -> bytes:
    return json.dumps(list(spans)).encode()


def _endpoint(service: str = "frontend", ipv4: str = "10.1.2.3", port: int = 8080) -> dict:
    return {"serviceName": service, "ipv4": ipv4, "port": port}


# ---------------------------------------------------------------------------------------------------------
# spans from the OpenTelemetry SDK, serialized by its own Zipkin encoders


@pytest.fixture(scope="module")
def sdk_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "checkout", "service.version": "1.2"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.instrumentation", "0.9")
    with tracer.start_as_current_span(
        "handle", kind=SpanKind.SERVER, attributes={"http.method": "GET", "retries": 3, "cached": True}
    ) as root:
        root.add_event("cache.miss", {"key": "cart:1"})
        with tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as child:
            child.set_status(SdkStatus(SdkStatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span("work"):
            pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _node_endpoint() -> NodeEndpoint:
    endpoint = NodeEndpoint(ipv4="10.0.0.7", port=8080)
    endpoint.service_name = "checkout"
    return endpoint


def _by_name(request: Any) -> dict[str, Span]:
    return {span.name: span for span in _all_spans(request)}


def _sdk_us(nanos: int) -> int:
    """The SDK encoder's µs rounding, back in ns."""
    return (nanos + 500) // 1000 * 1000


def test_v2_json_from_sdk_encoder(sdk_spans: list[ReadableSpan]) -> None:
    body = JsonV2Encoder().serialize(sdk_spans, _node_endpoint()).encode()
    request = zipkin_v2_json_to_otlp(body)

    assert len(request.resource_spans) == 1
    resource_spans = request.resource_spans[0]
    resource = _attrs(resource_spans.resource.attributes)
    assert resource["service.name"] == "checkout"
    assert resource["service.version"] == "1.2"
    assert resource["telemetry.sdk.language"] == "python"
    assert [(ss.scope.name, ss.scope.version) for ss in resource_spans.scope_spans] == [
        ("shop.instrumentation", "0.9")
    ]

    spans = _by_name(request)
    assert set(spans) == {"handle", "db", "work"}
    for sdk_span in sdk_spans:
        span = spans[sdk_span.name]
        context = sdk_span.get_span_context()
        assert span.trace_id == context.trace_id.to_bytes(16, "big")
        assert span.span_id == context.span_id.to_bytes(8, "big")
        expected_parent = sdk_span.parent.span_id.to_bytes(8, "big") if sdk_span.parent else b""
        assert span.parent_span_id == expected_parent
        assert span.start_time_unix_nano == _sdk_us(sdk_span.start_time)
        duration = _sdk_us(sdk_span.end_time - sdk_span.start_time)
        assert span.end_time_unix_nano == span.start_time_unix_nano + duration
        attrs = _attrs(span.attributes)
        # Resource and scope tags left the span; endpoint became net.host.*.
        assert not any(key.startswith(("service.", "telemetry.sdk.", "otel.")) for key in attrs)
        assert attrs["net.host.ip"] == "10.0.0.7"
        assert attrs["net.host.port"] == 8080
        assert not span.links

    assert spans["handle"].kind == Span.SPAN_KIND_SERVER
    assert spans["db"].kind == Span.SPAN_KIND_CLIENT
    assert spans["work"].kind == Span.SPAN_KIND_UNSPECIFIED  # SDK INTERNAL is sent without a kind

    handle = _attrs(spans["handle"].attributes)
    assert handle["http.method"] == "GET"
    assert handle["retries"] == "3"  # every tag is a string
    assert handle["cached"] == "true"
    assert spans["handle"].status.code == Status.STATUS_CODE_UNSET

    # Error: ERROR with an empty message, the error tag (carrying the description) stays an attribute.
    assert spans["db"].status.code == Status.STATUS_CODE_ERROR
    assert spans["db"].status.message == ""
    assert _attrs(spans["db"].attributes)["error"] == "timeout"

    (event,) = spans["handle"].events
    sdk_event = next(s for s in sdk_spans if s.name == "handle").events[0]
    assert event.time_unix_nano == _sdk_us(sdk_event.timestamp)
    assert json.loads(event.name) == {"cache.miss": {"key": "cart:1"}}


def test_v2_proto_matches_json_for_sdk_body(sdk_spans: list[ReadableSpan]) -> None:
    """The same spans as protobuf convert to the same OTLP as the JSON body."""
    body = JsonV2Encoder().serialize(sdk_spans, _node_endpoint())
    message = zipkin_proto.ListOfSpans()
    for item in json.loads(body):
        span = message.spans.add(
            trace_id=bytes.fromhex(item["traceId"]),
            id=bytes.fromhex(item["id"]),
            name=item["name"],
            timestamp=item["timestamp"],
            duration=item["duration"],
            kind={None: 0, "CLIENT": 1, "SERVER": 2}[item["kind"]],
        )
        if "parentId" in item:
            span.parent_id = bytes.fromhex(item["parentId"])
        span.local_endpoint.service_name = "checkout"
        span.local_endpoint.ipv4 = bytes([10, 0, 0, 7])
        span.local_endpoint.port = 8080
        for annotation in item.get("annotations", []):
            span.annotations.add(timestamp=annotation["timestamp"], value=annotation["value"])
        for key, value in item["tags"].items():
            span.tags[key] = value

    from_proto = zipkin_v2_proto_to_otlp(message.SerializeToString())
    from_json = zipkin_v2_json_to_otlp(body.encode())
    assert _attrs(from_proto.resource_spans[0].resource.attributes) == _attrs(
        from_json.resource_spans[0].resource.attributes
    )
    proto_spans, json_spans = _by_name(from_proto), _by_name(from_json)
    assert set(proto_spans) == set(json_spans)
    for name, span in json_spans.items():
        other = proto_spans[name]
        assert _attrs(other.attributes) == _attrs(span.attributes)
        other.ClearField("attributes")
        span.ClearField("attributes")
        assert other == span


# ---------------------------------------------------------------------------------------------------------
# v2 JSON, field by field


def test_v2_ids_128_bit() -> None:
    span = _convert_v2(parentId=PARENT_ID)
    assert span.trace_id == bytes.fromhex(TRACE_128)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)


def test_v2_ids_64_bit_trace_is_left_padded() -> None:
    span = _convert_v2(traceId=TRACE_64)
    assert span.trace_id == bytes(8) + bytes.fromhex(TRACE_64)
    assert len(span.trace_id) == 16


def test_v2_short_and_uppercase_ids() -> None:
    span = _convert_v2(traceId="ABC", id="1f")
    assert span.trace_id == bytes.fromhex("0abc").rjust(16, b"\0")
    assert span.span_id == bytes.fromhex("1f").rjust(8, b"\0")


@pytest.mark.parametrize("parent", [None, "", "0000000000000000", SPAN_ID])
def test_v2_missing_zero_or_self_parent_is_root(parent: str | None) -> None:
    fields = {} if parent is None else {"parentId": parent}
    assert _convert_v2(**fields).parent_span_id == b""


def test_v2_name() -> None:
    assert _convert_v2(name="GET /api/cart").name == "GET /api/cart"
    assert _convert_v2(name=None).name == ""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("CLIENT", Span.SPAN_KIND_CLIENT),
        ("SERVER", Span.SPAN_KIND_SERVER),
        ("PRODUCER", Span.SPAN_KIND_PRODUCER),
        ("CONSUMER", Span.SPAN_KIND_CONSUMER),
        (None, Span.SPAN_KIND_UNSPECIFIED),
        ("client", Span.SPAN_KIND_UNSPECIFIED),
    ],
)
def test_v2_kind(kind: str | None, expected: int) -> None:
    assert _convert_v2(kind=kind).kind == expected


def test_v2_span_kind_tag_internal() -> None:
    span = _convert_v2(tags={"span.kind": "internal", "a": "b"})
    assert span.kind == Span.SPAN_KIND_INTERNAL
    assert _attrs(span.attributes) == {"a": "b"}
    # An explicit Zipkin kind wins and the tag stays.
    span = _convert_v2(kind="SERVER", tags={"span.kind": "internal"})
    assert span.kind == Span.SPAN_KIND_SERVER
    assert _attrs(span.attributes) == {"span.kind": "internal"}


def test_v2_timestamps() -> None:
    span = _convert_v2(timestamp=TS_US, duration=2500)
    assert span.start_time_unix_nano == TS_US * 1000
    assert span.end_time_unix_nano == (TS_US + 2500) * 1000
    assert "otel.zipkin.absentField.startTime" not in _attrs(span.attributes)


def test_v2_missing_timestamp_is_flagged() -> None:
    span = _convert_v2(timestamp=None, duration=7)
    assert span.start_time_unix_nano == 0
    assert span.end_time_unix_nano == 7000
    assert _attrs(span.attributes)["otel.zipkin.absentField.startTime"] is True


def test_v2_endpoints() -> None:
    span = _convert_v2(
        localEndpoint={"serviceName": "frontend", "ipv4": "10.1.2.3", "port": 8080},
        remoteEndpoint={"serviceName": "backend", "ipv6": "2001:DB8::1", "port": 9411},
    )
    assert _attrs(span.attributes) == {
        "net.host.ip": "10.1.2.3",
        "net.host.port": 8080,
        "peer.service": "backend",
        "net.peer.ip": "2001:db8::1",
        "net.peer.port": 9411,
    }


def test_v2_endpoint_ipv6_wins_and_zero_port_is_omitted() -> None:
    span = _convert_v2(localEndpoint={"serviceName": "a", "ipv4": "1.2.3.4", "ipv6": "::ffff:5.6.7.8"})
    assert _attrs(span.attributes) == {"net.host.ip": "5.6.7.8"}


def test_v2_tags_are_string_attributes() -> None:
    span = _convert_v2(tags={"http.method": "GET", "http.status_code": "200", "empty": ""})
    assert _attrs(span.attributes) == {"http.method": "GET", "http.status_code": "200", "empty": ""}
    for kv in span.attributes:
        assert kv.value.WhichOneof("value") == "string_value"


@pytest.mark.parametrize(
    ("tags", "code", "message", "left"),
    [
        ({"error": "true"}, Status.STATUS_CODE_ERROR, "", {}),
        ({"error": "connection refused"}, Status.STATUS_CODE_ERROR, "", {"error": "connection refused"}),
        ({"error": ""}, Status.STATUS_CODE_ERROR, "", {"error": ""}),
        (
            {"otel.status_code": "STATUS_CODE_ERROR", "otel.status_description": "boom"},
            Status.STATUS_CODE_ERROR,
            "boom",
            {},
        ),
        ({"otel.status_code": "Ok"}, Status.STATUS_CODE_OK, "", {}),
        ({"otel.status_code": "ERROR", "error": "x"}, Status.STATUS_CODE_ERROR, "", {"error": "x"}),
        ({"otel.status_code": "OK"}, Status.STATUS_CODE_UNSET, "", {}),
        ({"otel.status_description": "x"}, Status.STATUS_CODE_UNSET, "", {"otel.status_description": "x"}),
        ({}, Status.STATUS_CODE_UNSET, "", {}),
    ],
)
def test_v2_status(tags: dict, code: int, message: str, left: dict) -> None:
    span = _convert_v2(tags=tags)
    assert span.status.code == code
    assert span.status.message == message
    assert _attrs(span.attributes) == left


def test_v2_trace_state_tag() -> None:
    span = _convert_v2(tags={"w3c.tracestate": "vendor=1"})
    assert span.trace_state == "vendor=1"
    assert _attrs(span.attributes) == {}


def test_v2_scope_from_otel_library_tags() -> None:
    request = zipkin_v2_json_to_otlp(
        _v2_json(
            _v2(
                id="01",
                localEndpoint={"serviceName": "svc"},
                tags={"otel.library.name": "lib.a", "otel.library.version": "1.0", "k": "v"},
            ),
            _v2(id="02", localEndpoint={"serviceName": "svc"}, tags={"otel.scope.name": "lib.b"}),
            _v2(id="03", localEndpoint={"serviceName": "svc"}, tags={"otel.library.name": "lib.a"}),
            _v2(id="04", localEndpoint={"serviceName": "svc"}),
        )
    )
    (resource_spans,) = request.resource_spans
    scopes = [(ss.scope.name, ss.scope.version, len(ss.spans)) for ss in resource_spans.scope_spans]
    assert scopes == [("lib.a", "1.0", 1), ("lib.b", "", 1), ("lib.a", "", 1), ("", "", 1)]
    assert not resource_spans.scope_spans[3].HasField("scope")
    first = resource_spans.scope_spans[0].spans[0]
    assert _attrs(first.attributes) == {"k": "v"}


def test_v2_scope_prefers_otel_scope_tags() -> None:
    request = zipkin_v2_json_to_otlp(
        _v2_json(
            _v2(
                tags={
                    "otel.scope.name": "new",
                    "otel.scope.version": "2",
                    "otel.library.name": "old",
                    "otel.library.version": "1",
                }
            )
        )
    )
    scope_spans = request.resource_spans[0].scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("new", "2")
    assert _attrs(scope_spans.spans[0].attributes) == {}


def test_v2_annotations_become_events() -> None:
    span = _convert_v2(
        annotations=[
            {"timestamp": TS_US + 10, "value": "ws"},
            {"timestamp": TS_US + 20, "value": "cache miss"},
            {"timestamp": TS_US + 30, "value": "a|b"},
        ]
    )
    assert [(e.time_unix_nano, e.name) for e in span.events] == [
        ((TS_US + 10) * 1000, "ws"),
        ((TS_US + 20) * 1000, "cache miss"),
        ((TS_US + 30) * 1000, "a|b"),
    ]
    assert all(not e.attributes for e in span.events)


def test_v2_annotation_in_collector_event_encoding() -> None:
    value = 'retry|{"attempt":2,"why":"x|y","ok":true}|1'
    span = _convert_v2(annotations=[{"timestamp": TS_US, "value": value}])
    (event,) = span.events
    assert event.name == "retry"
    assert event.dropped_attributes_count == 1
    assert _attrs(event.attributes) == {"attempt": 2, "why": "x|y", "ok": True}


def test_v2_resource_grouping_by_service() -> None:
    request = zipkin_v2_json_to_otlp(
        _v2_json(
            _v2(id="01", localEndpoint={"serviceName": "frontend"}),
            _v2(id="02", localEndpoint={"serviceName": "backend"}),
            _v2(id="03", localEndpoint={"serviceName": "frontend"}),
        )
    )
    assert _groups(request) == [("frontend", [1, 3]), ("backend", [2])]


def test_v2_resource_tags_move_to_resource_and_split_groups() -> None:
    request = zipkin_v2_json_to_otlp(
        _v2_json(
            _v2(id="01", localEndpoint={"serviceName": "svc"}, tags={"host.name": "a", "k": "1"}),
            _v2(id="02", localEndpoint={"serviceName": "svc"}, tags={"host.name": "b"}),
            _v2(id="03", localEndpoint={"serviceName": "svc"}, tags={"host.name": "a"}),
        )
    )
    resources = [_attrs(rs.resource.attributes) for rs in request.resource_spans]
    assert resources == [{"service.name": "svc", "host.name": "a"}, {"service.name": "svc", "host.name": "b"}]
    assert [len(rs.scope_spans[0].spans) for rs in request.resource_spans] == [2, 1]
    assert _attrs(request.resource_spans[0].scope_spans[0].spans[0].attributes) == {"k": "1"}


def test_v2_service_name_source_and_no_service() -> None:
    request = zipkin_v2_json_to_otlp(
        _v2_json(
            _v2(id="01", localEndpoint={"serviceName": "svc"}, tags={"otlp.service.name.source": "app.name"}),
            _v2(id="02"),
        )
    )
    resources = [_attrs(rs.resource.attributes) for rs in request.resource_spans]
    assert resources == [{"app.name": "svc"}, {}]


def test_v2_debug_and_shared_are_not_recorded() -> None:
    span = _convert_v2(debug=True, shared=True)
    assert _attrs(span.attributes) == {}


def test_v2_empty_list() -> None:
    assert len(zipkin_v2_json_to_otlp(b"[]").resource_spans) == 0


# ---------------------------------------------------------------------------------------------------------
# v2 protobuf


def _proto_span(message: Any, **fields: Any) -> Any:
    values = {
        "trace_id": bytes.fromhex(TRACE_128),
        "id": bytes.fromhex(SPAN_ID),
        "name": "get /cart",
        "timestamp": TS_US,
        "duration": 1500,
    }
    values.update(fields)
    return message.spans.add(**values)


def test_v2_proto_field_by_field() -> None:
    message = zipkin_proto.ListOfSpans()
    span = _proto_span(
        message, parent_id=bytes.fromhex(PARENT_ID), kind=zipkin_proto.KIND_PRODUCER, debug=True
    )
    span.local_endpoint.service_name = "frontend"
    span.local_endpoint.ipv4 = bytes([192, 168, 1, 10])
    span.local_endpoint.port = 8080
    span.remote_endpoint.service_name = "kafka"
    span.remote_endpoint.ipv6 = bytes.fromhex("20010db8000000000000000000000001")
    span.remote_endpoint.port = 9092
    span.annotations.add(timestamp=TS_US + 5, value="ws")
    span.tags["topic"] = "orders"
    span.tags["error"] = "true"
    span.tags["otel.library.name"] = "kafka-client"
    span.tags["otel.library.version"] = "3.1"
    span.tags["service.namespace"] = "shop"

    request = zipkin_v2_proto_to_otlp(message.SerializeToString())
    (resource_spans,) = request.resource_spans
    resource = _attrs(resource_spans.resource.attributes)
    assert resource == {"service.name": "frontend", "service.namespace": "shop"}
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("kafka-client", "3.1")
    (out,) = scope_spans.spans
    assert out.trace_id == bytes.fromhex(TRACE_128)
    assert out.span_id == bytes.fromhex(SPAN_ID)
    assert out.parent_span_id == bytes.fromhex(PARENT_ID)
    assert out.name == "get /cart"
    assert out.kind == Span.SPAN_KIND_PRODUCER
    assert out.start_time_unix_nano == TS_US * 1000
    assert out.end_time_unix_nano == (TS_US + 1500) * 1000
    assert out.status.code == Status.STATUS_CODE_ERROR
    assert _attrs(out.attributes) == {
        "topic": "orders",
        "net.host.ip": "192.168.1.10",
        "net.host.port": 8080,
        "peer.service": "kafka",
        "net.peer.ip": "2001:db8::1",
        "net.peer.port": 9092,
    }
    assert [(e.time_unix_nano, e.name) for e in out.events] == [((TS_US + 5) * 1000, "ws")]


def test_v2_proto_64_bit_trace_id_and_root() -> None:
    message = zipkin_proto.ListOfSpans()
    _proto_span(message, trace_id=bytes.fromhex(TRACE_64))
    span = _only_span(zipkin_v2_proto_to_otlp(message.SerializeToString()))
    assert span.trace_id == bytes(8) + bytes.fromhex(TRACE_64)
    assert span.parent_span_id == b""
    assert span.kind == Span.SPAN_KIND_UNSPECIFIED


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (zipkin_proto.KIND_CLIENT, Span.SPAN_KIND_CLIENT),
        (zipkin_proto.KIND_SERVER, Span.SPAN_KIND_SERVER),
        (zipkin_proto.KIND_CONSUMER, Span.SPAN_KIND_CONSUMER),
        (zipkin_proto.KIND_UNSPECIFIED, Span.SPAN_KIND_UNSPECIFIED),
    ],
)
def test_v2_proto_kind(kind: int, expected: int) -> None:
    message = zipkin_proto.ListOfSpans()
    _proto_span(message, kind=kind)
    assert _only_span(zipkin_v2_proto_to_otlp(message.SerializeToString())).kind == expected


def test_v2_proto_grouping_two_services() -> None:
    message = zipkin_proto.ListOfSpans()
    for i, service in enumerate(["a", "b", "a"]):
        span = _proto_span(message, id=bytes([0, 0, 0, 0, 0, 0, 0, i + 1]))
        span.local_endpoint.service_name = service
    request = zipkin_v2_proto_to_otlp(message.SerializeToString())
    counts = [
        (_attrs(rs.resource.attributes)["service.name"], sum(len(ss.spans) for ss in rs.scope_spans))
        for rs in request.resource_spans
    ]
    assert counts == [("a", 2), ("b", 1)]


def test_v2_proto_empty_body() -> None:
    assert len(zipkin_v2_proto_to_otlp(b"").resource_spans) == 0


# ---------------------------------------------------------------------------------------------------------
# v1 JSON


def test_v1_json_from_sdk_encoder(sdk_spans: list[ReadableSpan]) -> None:
    body = JsonV1Encoder().serialize(sdk_spans, _node_endpoint()).encode()
    request = zipkin_v1_json_to_otlp(body, now_ns=1)

    (resource_spans,) = request.resource_spans
    # No core annotations: the service comes from the binary annotations' endpoint.
    assert _attrs(resource_spans.resource.attributes) == {"service.name": "checkout"}
    spans = _by_name(request)
    assert set(spans) == {"handle", "db", "work"}
    for sdk_span in sdk_spans:
        span = spans[sdk_span.name]
        context = sdk_span.get_span_context()
        assert span.trace_id == context.trace_id.to_bytes(16, "big")
        assert span.span_id == context.span_id.to_bytes(8, "big")
        expected_parent = sdk_span.parent.span_id.to_bytes(8, "big") if sdk_span.parent else b""
        assert span.parent_span_id == expected_parent
        assert span.start_time_unix_nano == _sdk_us(sdk_span.start_time)
        duration = _sdk_us(sdk_span.end_time - sdk_span.start_time)
        assert span.end_time_unix_nano == span.start_time_unix_nano + duration
        assert span.kind == Span.SPAN_KIND_UNSPECIFIED  # the SDK's v1 encoder writes no cs/sr annotations

    handle = _attrs(spans["handle"].attributes)
    assert handle["http.method"] == "GET"
    assert handle["retries"] == "3"
    assert all(isinstance(value, str) for value in handle.values())
    assert spans["db"].status.code == Status.STATUS_CODE_ERROR
    assert spans["db"].status.message == ""
    assert "error" not in _attrs(spans["db"].attributes)
    assert [json.loads(e.name) for e in spans["handle"].events] == [{"cache.miss": {"key": "cart:1"}}]


def _v1(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE_128, "id": SPAN_ID, "name": "get", "timestamp": TS_US, "duration": 900}
    span.update(fields)
    return span


def _convert_v1(**fields: Any) -> tuple[dict[str, Any], Span]:
    request = zipkin_v1_json_to_otlp(_v1_json(_v1(**fields)), now_ns=42)
    (resource_spans,) = request.resource_spans
    return _attrs(resource_spans.resource.attributes), _only_span(request)


def test_v1_ids() -> None:
    _, span = _convert_v1(traceId=TRACE_64, parentId=PARENT_ID)
    assert span.trace_id == bytes(8) + bytes.fromhex(TRACE_64)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    _, span = _convert_v1()
    assert span.trace_id == bytes.fromhex(TRACE_128)
    assert span.parent_span_id == b""


def test_v1_client_from_cs_cr() -> None:
    endpoint = _endpoint("frontend", "10.1.2.3", 8080)
    resource, span = _convert_v1(
        timestamp=None,
        duration=None,
        annotations=[
            {"timestamp": TS_US, "value": "cs", "endpoint": endpoint},
            {"timestamp": TS_US + 40, "value": "retry", "endpoint": endpoint},
            {"timestamp": TS_US + 100, "value": "cr", "endpoint": endpoint},
        ],
    )
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert resource == {"service.name": "frontend", "ipv4": "10.1.2.3", "port": "8080"}
    # No span timestamp: start/end from the earliest/latest annotation.
    assert span.start_time_unix_nano == TS_US * 1000
    assert span.end_time_unix_nano == (TS_US + 100) * 1000
    assert [(e.time_unix_nano, e.name) for e in span.events] == [((TS_US + 40) * 1000, "retry")]
    assert _attrs(span.attributes) == {}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["sr", "ss"], Span.SPAN_KIND_SERVER),
        (["ss"], Span.SPAN_KIND_SERVER),
        (["ms"], Span.SPAN_KIND_PRODUCER),
        (["mr"], Span.SPAN_KIND_CONSUMER),
        (["custom"], Span.SPAN_KIND_UNSPECIFIED),
        ([], Span.SPAN_KIND_UNSPECIFIED),
    ],
)
def test_v1_kind_from_core_annotations(values: list[str], expected: int) -> None:
    endpoint = _endpoint("backend")
    annotations = [{"timestamp": TS_US + i, "value": v, "endpoint": endpoint} for i, v in enumerate(values)]
    resource, span = _convert_v1(annotations=annotations)
    assert span.kind == expected
    core = any(value in {"sr", "ss", "ms", "mr"} for value in values)
    assert resource["service.name"] == ("backend" if core else "unknown-service")


def test_v1_span_timestamp_wins_over_annotations() -> None:
    _, span = _convert_v1(
        timestamp=TS_US,
        duration=900,
        annotations=[{"timestamp": TS_US - 5, "value": "sr", "endpoint": _endpoint()}],
    )
    assert span.start_time_unix_nano == TS_US * 1000
    assert span.end_time_unix_nano == (TS_US + 900) * 1000


def test_v1_no_time_at_all_uses_now_and_flags_it() -> None:
    _, span = _convert_v1(timestamp=None, duration=None)
    assert span.start_time_unix_nano == span.end_time_unix_nano == 42
    assert _attrs(span.attributes) == {"otel.zipkin.absentField.startTime": True}
    before = time.time_ns()
    span = _only_span(zipkin_v1_json_to_otlp(_v1_json(_v1(timestamp=None))))
    assert before <= span.start_time_unix_nano <= time.time_ns()


def test_v1_binary_annotations() -> None:
    resource, span = _convert_v1(
        binaryAnnotations=[
            {"key": "http.path", "value": "/cart", "endpoint": _endpoint("shop")},
            {"key": "lc", "value": "jdbc"},
            {"key": "sa", "value": True, "endpoint": _endpoint("db", "10.9.9.9", 5432)},
            {"key": "retries", "value": 2},
        ]
    )
    expected = {"http.path": "/cart", "component": "jdbc", "sa": "true", "retries": "2"}
    assert _attrs(span.attributes) == expected
    # Service from the last binary annotation endpoint with a name (no core annotations).
    assert resource == {"service.name": "db"}


def test_v1_local_component_is_the_last_resort_service() -> None:
    resource, _ = _convert_v1(binaryAnnotations=[{"key": "lc", "value": "scheduler"}])
    assert resource == {"service.name": "scheduler"}


@pytest.mark.parametrize(
    ("tags", "code", "message", "left"),
    [
        ({"error": "boom"}, Status.STATUS_CODE_ERROR, "", {}),
        ({"error": "x", "otel.status_description": "d"}, Status.STATUS_CODE_ERROR, "d", {}),
        ({"census.status_code": "0", "error": "x"}, Status.STATUS_CODE_OK, "", {}),
        ({"census.status_code": "5", "census.status_description": "nf"}, Status.STATUS_CODE_ERROR, "nf", {}),
        ({"otel.status_code": "1"}, Status.STATUS_CODE_OK, "", {}),
        ({"otel.status_code": "ERROR"}, Status.STATUS_CODE_UNSET, "", {}),
        (
            {"http.status_code": "503", "http.status_message": "unavailable"},
            Status.STATUS_CODE_ERROR,
            "unavailable",
            {"http.status_code": "503", "http.status_message": "unavailable"},
        ),
        ({"http.status_code": "200"}, Status.STATUS_CODE_UNSET, "", {"http.status_code": "200"}),
    ],
)
def test_v1_status(tags: dict, code: int, message: str, left: dict) -> None:
    _, span = _convert_v1(binaryAnnotations=[{"key": k, "value": v} for k, v in tags.items()])
    assert span.status.code == code
    assert span.status.message == message
    assert _attrs(span.attributes) == left


def test_v1_resource_grouping() -> None:
    def server(span_id: str, service: str) -> dict:
        annotation = {"timestamp": TS_US, "value": "sr", "endpoint": _endpoint(service)}
        return _v1(id=span_id, annotations=[annotation])

    request = zipkin_v1_json_to_otlp(
        _v1_json(server("01", "frontend"), server("02", "backend"), server("03", "frontend")), now_ns=1
    )
    assert _groups(request) == [("frontend", [1, 3]), ("backend", [2])]
    assert all(not ss.HasField("scope") for rs in request.resource_spans for ss in rs.scope_spans)


# ---------------------------------------------------------------------------------------------------------
# malformed bodies


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "zipkin v2: body is not valid JSON"),
        (b"", "zipkin v2: body is not valid JSON"),
        (b'{"traceId": "1"}', "zipkin v2: body must be a JSON list of spans, got dict"),
        (b"[1]", "zipkin v2 span 0: must be a JSON object"),
        (_v2_json(_v2(), _v2(), _v2(), _v2(traceId="xyz")), 'zipkin v2 span 3: traceId "xyz" is not hex'),
        (_v2_json(_v2(traceId="a" * 33)), "zipkin v2 span 0: traceId"),
        (_v2_json(_v2(id="12 34")), 'zipkin v2 span 0: id "12 34" is not hex'),
        (_v2_json(_v2(id="1" * 17)), "is longer than 16 hex characters"),
        (_v2_json(_v2(parentId="zz")), 'zipkin v2 span 0: parentId "zz" is not hex'),
        (_v2_json(_v2(traceId=None)), "zipkin v2 span 0: traceId is missing"),
        (_v2_json({"traceId": TRACE_128}), "zipkin v2 span 0: id is missing"),
        (_v2_json(_v2(traceId=123)), "traceId must be a hex string"),
        (_v2_json(_v2(timestamp=-1)), 'timestamp "-1" is not a non-negative integer'),
        (_v2_json(_v2(timestamp="now")), "timestamp"),
        (_v2_json(_v2(tags={"n": 1})), 'tag "n" has a non-string value'),
        (_v2_json(_v2(tags=["a"])), "tags must be a JSON object"),
        (_v2_json(_v2(annotations={})), "annotations must be a JSON list"),
        (_v2_json(_v2(localEndpoint={"ipv4": "300.1.1.1"})), 'localEndpoint.ipv4 "300.1.1.1" is not an IP'),
        (_v2_json(_v2(remoteEndpoint={"port": "80"})), "remoteEndpoint.port"),
        (_v2_json(_v2(kind=1)), "kind must be a string"),
        (
            b'[{"traceId": "ab", "id": "cd", "name": "\\udcff"}]',
            "zipkin v2 span 0: a string is not valid Unicode",
        ),
        (_v2_json(_v2(), _v2(tags={"\udcff": "x"})), "zipkin v2 span 1: a string is not valid Unicode"),
    ],
)
def test_v2_json_malformed(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        zipkin_v2_json_to_otlp(body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def _proto_body(**fields: Any) -> bytes:
    message = zipkin_proto.ListOfSpans()
    _proto_span(message, **fields)
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xff\xff\xff", "zipkin v2 protobuf: body does not parse as ListOfSpans"),
        (b"\x0a\x05\x0a\x10", "zipkin v2 protobuf: body does not parse as ListOfSpans"),
        (_proto_body(trace_id=b""), "zipkin v2 protobuf span 0: trace_id is missing"),
        (_proto_body(trace_id=bytes(17)), "trace_id is 17 bytes, at most 16 expected"),
        (_proto_body(id=b""), "zipkin v2 protobuf span 0: id is missing"),
        (_proto_body(id=bytes(9)), "id is 9 bytes, at most 8 expected"),
        (_proto_body(parent_id=bytes(10)), "parent_id is 10 bytes"),
        (_proto_body(timestamp=(1 << 64) - 1), "timestamp"),
    ],
)
def test_v2_proto_malformed(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        zipkin_v2_proto_to_otlp(body)
    assert message in str(info.value)


def test_v2_proto_bad_ip_length() -> None:
    message = zipkin_proto.ListOfSpans()
    span = _proto_span(message)
    span.local_endpoint.ipv4 = b"\x01\x02\x03"
    with pytest.raises(InvalidInputError, match=r"local_endpoint\.ipv4 is 3 bytes, 4 or 16 expected"):
        zipkin_v2_proto_to_otlp(message.SerializeToString())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "zipkin v1: body is not valid JSON"),
        (b'"spans"', "zipkin v1: body must be a JSON list of spans, got str"),
        (_v1_json(_v1(), _v1(traceId="g00d")), 'zipkin v1 span 1: traceId "g00d" is not hex'),
        (_v1_json(_v1(id=None)), "zipkin v1 span 0: id is missing"),
        (
            b'[{"traceId": "ab", "id": "cd", "name": "\\ud800"}]',
            "zipkin v1 span 0: a string is not valid Unicode",
        ),
        (_v1_json(_v1(annotations=[{"timestamp": 1, "value": 5}])), "annotations[0].value must be a string"),
        (_v1_json(_v1(binaryAnnotations=[{"key": "k", "value": {"a": 1}}])), "binaryAnnotations[0].value"),
        (_v1_json(_v1(annotations=[{"value": "sr", "endpoint": {"port": 1 << 40}}])), "endpoint.port"),
    ],
)
def test_v1_json_malformed(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        zipkin_v1_json_to_otlp(body, now_ns=1)
    assert message in str(info.value)
