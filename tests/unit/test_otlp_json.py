"""OTLP/JSON codec: spec deviations from protobuf JSON (hex ids) and lossless round trips."""

from __future__ import annotations

import copy
import json
import math
import struct

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from tracelake.errors import InvalidInputError
from tracelake.otlp import otlp_json_to_request, request_to_otlp_json

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_ID = bytes.fromhex("eee19b7ec3c1b173")


def _kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def full_request() -> ExportTraceServiceRequest:
    """A request that sets every field OTLP traces define, so a round trip checks them all."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.26.0")
    rs.resource.attributes.extend([_kv("service.name", string_value="checkout"), _kv("pid", int_value=4242)])
    rs.resource.dropped_attributes_count = 3
    ss = rs.scope_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    ss.scope.name = "io.opentelemetry.http"
    ss.scope.version = "1.2.3"
    ss.scope.attributes.append(_kv("scope.attr", bool_value=True))
    ss.scope.dropped_attributes_count = 1

    nested = AnyValue()
    nested.kvlist_value.values.extend([_kv("inner", string_value="x"), _kv("deeper", int_value=-7)])
    array = AnyValue()
    array.array_value.values.extend(
        [
            AnyValue(string_value="a"),
            AnyValue(int_value=1),
            AnyValue(double_value=1.5),
            nested,
        ]
    )
    span = ss.spans.add(
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        parent_span_id=PARENT_ID,
        trace_state="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        flags=0x301,
        name="GET /cart",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=2**64 - 1,  # above 2**63: must survive as uint64
        dropped_attributes_count=2,
        dropped_events_count=4,
        dropped_links_count=5,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
    )
    span.attributes.extend(
        [
            _kv("str", string_value="héllo ✓"),
            _kv("bool", bool_value=False),
            _kv("int", int_value=-(2**63)),
            _kv("double", double_value=3.141592653589793),
            _kv("tiny", double_value=5e-324),
            _kv("bytes", bytes_value=b"\x00\xff\x10binary"),
            _kv("array", array_value=array.array_value),
            _kv("kvlist", kvlist_value=nested.kvlist_value),
            _kv("empty"),
        ]
    )
    event = span.events.add(
        time_unix_nano=1_700_000_000_200_000_000,
        name="exception",
        dropped_attributes_count=6,
    )
    event.attributes.append(_kv("exception.type", string_value="ValueError"))
    link = span.links.add(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        trace_state="k=v",
        dropped_attributes_count=7,
        flags=0x100,
    )
    link.attributes.append(_kv("link.kind", string_value="follows"))
    # A second, minimal span: root span, no parent, defaults everywhere else.
    ss.spans.add(trace_id=TRACE_ID, span_id=bytes.fromhex("0000000000000001"), name="root")
    req.resource_spans.add()  # empty ResourceSpans must survive too
    return req


def test_round_trip_every_field() -> None:
    req = full_request()
    assert otlp_json_to_request(request_to_otlp_json(req)) == req


def test_round_trip_through_json_text() -> None:
    req = full_request()
    text = json.dumps(request_to_otlp_json(req))
    assert otlp_json_to_request(json.loads(text)) == req


def test_output_follows_otlp_json_spec() -> None:
    out = request_to_otlp_json(full_request())
    span = out["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == TRACE_ID.hex()
    assert span["spanId"] == SPAN_ID.hex()
    assert span["parentSpanId"] == PARENT_ID.hex()
    assert span["links"][0]["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert span["links"][0]["spanId"] == "b7ad6b7169203331"
    assert span["kind"] == 2  # enums as integers
    assert span["status"]["code"] == 2
    assert span["startTimeUnixNano"] == "1700000000123456789"  # 64-bit as decimal strings
    assert span["endTimeUnixNano"] == str(2**64 - 1)
    assert span["droppedAttributesCount"] == 2  # 32-bit stay numbers
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["bytes"] == {"bytesValue": "AP8QYmluYXJ5"}  # bytes attributes stay base64
    assert attrs["int"] == {"intValue": str(-(2**63))}
    assert "parentSpanId" not in out["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert out["resourceSpans"][0]["schemaUrl"].startswith("https://")


def test_traces_data_is_accepted_both_ways() -> None:
    data = TracesData()
    data.ParseFromString(full_request().SerializeToString())
    out = request_to_otlp_json(data)
    assert out == request_to_otlp_json(full_request())
    assert otlp_json_to_request(out).SerializeToString() == data.SerializeToString()


def test_request_to_otlp_json_rejects_other_messages() -> None:
    with pytest.raises(TypeError):
        request_to_otlp_json(Span())  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308])
def test_special_doubles_round_trip(value: float) -> None:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(name="s")
    span.attributes.append(_kv("d", double_value=value))
    back = otlp_json_to_request(json.loads(json.dumps(request_to_otlp_json(req))))
    got = back.resource_spans[0].scope_spans[0].spans[0].attributes[0].value
    assert got.WhichOneof("value") == "double_value"
    assert struct.pack("<d", got.double_value) == struct.pack("<d", value)  # bitwise: NaN, -0.0


def _one_span(**span: object) -> dict[str, object]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def _span_of(req: ExportTraceServiceRequest) -> Span:
    return req.resource_spans[0].scope_spans[0].spans[0]


def test_hex_ids_any_case_and_empty() -> None:
    req = otlp_json_to_request(
        _one_span(traceId=TRACE_ID.hex().upper(), spanId=SPAN_ID.hex(), parentSpanId="")
    )
    span = _span_of(req)
    assert span.trace_id == TRACE_ID
    assert span.span_id == SPAN_ID
    assert span.parent_span_id == b""


def test_link_ids_are_hex() -> None:
    req = otlp_json_to_request(
        _one_span(links=[{"traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "flags": 1}])
    )
    link = _span_of(req).links[0]
    assert (link.trace_id, link.span_id, link.flags) == (TRACE_ID, SPAN_ID, 1)


def test_id_length_is_not_checked() -> None:
    """Wrong lengths are kept as given; deciding what to do with them is the ingester's job."""
    span = _span_of(otlp_json_to_request(_one_span(traceId="abcd", spanId="00" * 9)))
    assert span.trace_id == b"\xab\xcd"
    assert span.span_id == b"\x00" * 9


def test_snake_case_keys() -> None:
    obj = {
        "resource_spans": [
            {
                "schema_url": "s",
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_ID.hex(),
                                "span_id": SPAN_ID.hex(),
                                "parent_span_id": PARENT_ID.hex(),
                                "start_time_unix_nano": 5,
                                "links": [
                                    {
                                        "trace_id": TRACE_ID.hex(),
                                        "span_id": SPAN_ID.hex(),
                                    }
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    req = otlp_json_to_request(obj)
    span = _span_of(req)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        TRACE_ID,
        SPAN_ID,
        PARENT_ID,
    )
    assert span.links[0].trace_id == TRACE_ID
    assert span.start_time_unix_nano == 5
    assert req.resource_spans[0].schema_url == "s"


@pytest.mark.parametrize("start", [1_700_000_000_123_456_789, "1700000000123456789"])
@pytest.mark.parametrize("int_value", [-42, "-42"])
def test_64_bit_integers_as_numbers_or_strings(start: object, int_value: object) -> None:
    span = _span_of(
        otlp_json_to_request(
            _one_span(
                startTimeUnixNano=start,
                attributes=[{"key": "i", "value": {"intValue": int_value}}],
            )
        )
    )
    assert span.start_time_unix_nano == 1_700_000_000_123_456_789
    assert span.attributes[0].value.int_value == -42


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (3, 2),
        ("SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"),
        ("SPAN_KIND_CLIENT", 2),
        (3, "STATUS_CODE_ERROR"),
    ],
)
def test_enums_as_names_or_numbers(kind: object, code: object) -> None:
    span = _span_of(otlp_json_to_request(_one_span(kind=kind, status={"code": code})))
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert span.status.code == Status.STATUS_CODE_ERROR


def test_unknown_fields_are_ignored() -> None:
    obj = _one_span(name="n", someFutureField={"x": 1})
    obj["resourceSpans"][0]["newTopLevelThing"] = 1  # type: ignore[index]
    assert _span_of(otlp_json_to_request(obj)).name == "n"


def test_empty_object_is_an_empty_request() -> None:
    assert otlp_json_to_request({}) == ExportTraceServiceRequest()
    assert otlp_json_to_request({"resourceSpans": []}) == ExportTraceServiceRequest()


def test_legacy_instrumentation_library_spans() -> None:
    obj = {
        "resourceSpans": [
            {
                "instrumentationLibrarySpans": [
                    {
                        "instrumentationLibrary": {"name": "lib", "version": "1"},
                        "spans": [{"spanId": SPAN_ID.hex()}],
                    }
                ]
            }
        ]
    }
    ss = otlp_json_to_request(obj).resource_spans[0].scope_spans[0]
    assert (ss.scope.name, ss.scope.version, ss.spans[0].span_id) == (
        "lib",
        "1",
        SPAN_ID,
    )


def test_input_is_not_modified() -> None:
    obj = request_to_otlp_json(full_request())
    before = copy.deepcopy(obj)
    otlp_json_to_request(obj)
    assert obj == before


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([], "must be an object"),
        ({"resourceLogs": []}, "no resourceSpans"),
        ({"resourceSpans": {}}, "resourceSpans: expected an array"),
        ({"resourceSpans": ["x"]}, "resourceSpans[0]: expected an object"),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [1]}]}]},
            "resourceSpans[0].scopeSpans[0].spans[0]: expected",
        ),
        (
            _one_span(traceId="xyz1"),
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: not a hex id: 'xyz1'",
        ),
        (_one_span(spanId="abc"), "spans[0].spanId: not a hex id"),  # odd length
        (
            _one_span(parentSpanId="ab cd"),
            "parentSpanId: not a hex id",
        ),  # fromhex would allow the space
        (_one_span(traceId=12), "traceId: expected a hex string, got a number"),
        (
            _one_span(links=[{}, {"spanId": "zz"}]),
            "spans[0].links[1].spanId: not a hex id",
        ),
        (
            _one_span(startTimeUnixNano="soon"),
            "spans[0]: Failed to parse startTimeUnixNano",
        ),
        (
            _one_span(
                attributes=[
                    {"key": "a", "value": {"intValue": 1}},
                    {"key": "b", "value": {"boolValue": "y"}},
                ]
            ),
            "spans[0].attributes[1].value",
        ),
        (_one_span(droppedAttributesCount=-1), "droppedAttributesCount"),
    ],
)
def test_bad_input_names_the_json_path(obj: object, expected: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        otlp_json_to_request(obj)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
