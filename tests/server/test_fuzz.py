"""Garbage thrown at every receiver of one running ``tracelake serve``, with hypothesis.

Random bytes, random mutations of valid messages, protobuf-shaped and JSON-shaped nonsense go to
OTLP/HTTP, OTLP/gRPC, Zipkin, Jaeger thrift over HTTP, Jaeger gRPC and the Jaeger agent's UDP ports.

What counts as surviving: every answer is a 2xx or a 4xx (gRPC: OK, INVALID_ARGUMENT or
RESOURCE_EXHAUSTED), never a 5xx, not even 503. The server is healthy throughout, and the only
legitimate 5xx it sends (503: shutting down, or the WAL cannot be written) cannot happen here; a 5xx for
garbage would be a bug, and a 503 would also make OTLP clients retry the same garbage forever. Data
sent before the fuzzing (one known good request per receiver) is stored exactly once afterwards.

The tests share one server and run in file order; the last one stops it and checks the blocks, then
restarts it, so each test also holds on its own.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.harness import Server
from tests.server.sender import span_ids
from tracelake.codec import zipkin_proto
from tracelake.codec.jaeger import model as jaeger_model
from tracelake.codec.jaeger import proto as jaeger_proto
from tracelake.codec.jaeger.thrift import writer_for
from tracelake.synth import SynthConfig, generate_request_bytes

RECEIVERS = (
    "otlp_http",
    "otlp_grpc",
    "zipkin",
    "jaeger_grpc",
    "jaeger_thrift_http",
    "jaeger_thrift_compact",
    "jaeger_thrift_binary",
)
GRPC_RECEIVERS = ("otlp_grpc", "jaeger_grpc")
OTLP_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
JAEGER_POST = "/jaeger.api_v2.CollectorService/PostSpans"
SURVIVING_GRPC_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----- valid messages of every protocol: the known good data, and the bases of mutations


def _ids(n: int) -> tuple[bytes, bytes]:
    """Trace and span ids of the n-th test span: distinct per n, never zero."""
    return (0xA0 + n).to_bytes(16, "big"), (0xB0 + n).to_bytes(8, "big")


def otlp_request(seed: int) -> bytes:
    return next(generate_request_bytes(SynthConfig(traces=2, traces_per_request=2, seed=seed)))


def zipkin_json(n: int) -> bytes:
    trace_id, span_id = _ids(n)
    span = {
        "traceId": trace_id.hex(),
        "id": span_id.hex(),
        "name": "zipkin span",
        "kind": "SERVER",
        "timestamp": time.time_ns() // 1000,
        "duration": 1500,
        "localEndpoint": {"serviceName": "zipkin-svc", "ipv4": "10.0.0.1", "port": 8080},
        "tags": {"http.method": "GET", "http.path": "/items/7"},
        "annotations": [{"timestamp": time.time_ns() // 1000, "value": "ws"}],
    }
    return json.dumps([span]).encode()


def zipkin_v1_json(n: int) -> bytes:
    trace_id, span_id = _ids(n)
    now = time.time_ns() // 1000
    endpoint = {"serviceName": "zipkin-v1", "ipv4": "10.0.0.2", "port": 80}
    span = {
        "traceId": trace_id.hex(),
        "id": span_id.hex(),
        "name": "v1 span",
        "timestamp": now,
        "duration": 10,
        "annotations": [{"timestamp": now, "value": "sr", "endpoint": endpoint}],
        "binaryAnnotations": [{"key": "http.path", "value": "/x", "endpoint": endpoint}],
    }
    return json.dumps([span]).encode()


def zipkin_protobuf(n: int) -> bytes:
    trace_id, span_id = _ids(n)
    spans = zipkin_proto.ListOfSpans()
    span = spans.spans.add(trace_id=trace_id, id=span_id, name="zipkin proto span", kind=2)
    span.timestamp, span.duration = time.time_ns() // 1000, 1500
    span.local_endpoint.service_name = "zipkin-proto"
    span.tags["k"] = "v"
    return spans.SerializeToString()


def jaeger_batch(n: int) -> jaeger_model.Batch:
    trace_id, span_id = _ids(n)
    span = jaeger_model.Span(
        trace_id_low=int.from_bytes(trace_id[8:], "big"),
        trace_id_high=int.from_bytes(trace_id[:8], "big"),
        span_id=int.from_bytes(span_id, "big"),
        parent_span_id=0,
        operation_name="jaeger span",
        flags=1,
        start_time=time.time_ns() // 1000,
        duration=1500,
        tags=[jaeger_model.Tag("http.method", jaeger_model.TAG_STRING, v_str="GET")],
    )
    return jaeger_model.Batch(jaeger_model.Process("jaeger-svc", None), [span])


def jaeger_thrift(n: int) -> bytes:
    writer = writer_for("binary")
    jaeger_model.write_batch(writer, jaeger_batch(n))
    return writer.getvalue()


def jaeger_datagram(n: int, protocol: str) -> bytes:
    writer = writer_for(protocol)
    jaeger_model.write_emit_batch(writer, jaeger_batch(n))
    return writer.getvalue()


def jaeger_post_spans(n: int) -> bytes:
    trace_id, span_id = _ids(n)
    request = jaeger_proto.PostSpansRequest()
    span = request.batch.spans.add(trace_id=trace_id, span_id=span_id, operation_name=b"jaeger grpc span")
    span.start_time.seconds = int(time.time()) - 1  # a Timestamp of the codec's own descriptor pool
    span.duration.nanos = 1500
    request.batch.process.service_name = b"jaeger-grpc-svc"
    return request.SerializeToString()


# ----- the server and how to talk to it


@dataclass
class Target:
    server: Server
    channels: dict[str, grpc.Channel]  # receiver -> a channel to it
    known: Counter[tuple[bytes, bytes]] = field(default_factory=Counter)

    def __repr__(self) -> str:  # what hypothesis prints with a failing example: keep it short
        return f"Target(ports={self.server.ports})"

    def http(self, receiver: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.ports[receiver], timeout=30)
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def rpc(self, method: str, body: bytes) -> grpc.StatusCode:
        receiver = "otlp_grpc" if method == OTLP_EXPORT else "jaeger_grpc"
        try:
            self.channels[receiver].unary_unary(method)(body, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def udp(self, receiver: str, datagram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, ("127.0.0.1", self.server.ports[receiver]))

    def outcomes(self, receiver: str) -> Counter[str]:
        """``tracelake_receiver_requests_total`` of one receiver, by outcome."""
        out: Counter[str] = Counter()
        for line in self.server.metrics().splitlines():
            if line.startswith("tracelake_receiver_requests_total{") and f'receiver="{receiver}"' in line:
                labels, _, value = line.rpartition(" ")
                outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
                out[outcome] += float(value)
        return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Wait for asynchronous work (UDP has no answer); never asserts how long it took."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def send_known_good(target: Target) -> None:
    """One valid request per receiver; what each accepted is what must be stored exactly once."""
    otlp_http, otlp_grpc = otlp_request(seed=1001), otlp_request(seed=1002)
    headers = {"Content-Type": "application/x-protobuf"}
    assert target.http("otlp_http", "/v1/traces", otlp_http, headers) == 200
    assert target.rpc(OTLP_EXPORT, otlp_grpc) == grpc.StatusCode.OK
    target.known.update(span_ids(otlp_http) + span_ids(otlp_grpc))
    json_headers = {"Content-Type": "application/json"}
    assert target.http("zipkin", "/api/v2/spans", zipkin_json(1), json_headers) == 202
    assert target.http("zipkin", "/api/v1/spans", zipkin_v1_json(2), json_headers) == 202
    proto_headers = {"Content-Type": "application/x-protobuf"}
    assert target.http("zipkin", "/api/v2/spans", zipkin_protobuf(3), proto_headers) == 202
    thrift_headers = {"Content-Type": "application/x-thrift"}
    assert target.http("jaeger_thrift_http", "/api/traces", jaeger_thrift(4), thrift_headers) == 202
    assert target.rpc(JAEGER_POST, jaeger_post_spans(5)) == grpc.StatusCode.OK
    target.udp("jaeger_thrift_compact", jaeger_datagram(6, "compact"))
    target.udp("jaeger_thrift_binary", jaeger_datagram(7, "binary"))
    for receiver in ("jaeger_thrift_compact", "jaeger_thrift_binary"):
        wait_for(lambda r=receiver: target.outcomes(r)["ok"] == 1, f"{receiver} to take its datagram")
    target.known.update(_ids(n) for n in range(1, 8))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = Server(tmp_path_factory.mktemp("fuzz"), receivers=RECEIVERS).start()
    channels = {r: grpc.insecure_channel(f"127.0.0.1:{server.ports[r]}") for r in GRPC_RECEIVERS}
    target = Target(server, channels)
    try:
        send_known_good(target)
        yield target
    finally:
        for channel in channels.values():
            channel.close()
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


# ----- strategies


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_scalar_field = st.one_of(
    st.tuples(st.integers(1, 20), st.integers(0, 2**64 - 1)).map(lambda f: _tag(f[0], 0) + _varint(f[1])),
    st.tuples(st.integers(1, 20), st.binary(min_size=8, max_size=8)).map(lambda f: _tag(f[0], 1) + f[1]),
    st.tuples(st.integers(1, 20), st.binary(min_size=4, max_size=4)).map(lambda f: _tag(f[0], 5) + f[1]),
    st.tuples(st.integers(1, 20), st.binary(max_size=40) | st.text(max_size=20).map(str.encode)).map(
        lambda f: _tag(f[0], 2) + _varint(len(f[1])) + f[1]
    ),
)


def _with_children(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    nested = st.tuples(st.integers(1, 20), children).map(lambda f: _tag(f[0], 2) + _varint(len(f[1])) + f[1])
    return st.lists(st.one_of(_scalar_field, nested), max_size=6).map(b"".join)


# Well-formed protobuf wire format with random field numbers, types and nesting: gets past the first
# byte of a decoder, into its handling of unexpected fields, types and values.
protobuf_like = st.recursive(st.lists(_scalar_field, max_size=6).map(b"".join), _with_children, max_leaves=40)


@st.composite
def mutated(draw: st.DrawFn, bases: tuple[bytes, ...]) -> bytes:
    """A valid message with a few bytes flipped, inserted, deleted, or its tail cut off."""
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "flip", "insert", "delete", "truncate"]))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.binary(min_size=1, max_size=16).map(bytes.hex),  # hex ids, right-sized or not
    st.integers(0, 2**64).map(str),  # OTLP/JSON's 64-bit integers as strings
)
json_values = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _shaped(*keys: str) -> st.SearchStrategy[dict]:
    """Objects with some of ``keys``, each holding any JSON: the shape a decoder expects, wrong values."""
    return st.fixed_dictionaries({}, optional={key: json_values for k in keys for key in k.split()})


_otlp_span = _shaped(
    "traceId spanId parentSpanId name kind startTimeUnixNano endTimeUnixNano",
    "attributes events links status traceState flags droppedAttributesCount",
)
otlp_json = st.one_of(
    json_values,
    st.builds(
        lambda resource, scope, spans: {
            "resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope, "spans": spans}]}]
        },
        json_values,
        json_values,
        st.lists(_otlp_span, max_size=3),
    ),
)
_zipkin_span = _shaped(
    "traceId id parentId name kind timestamp duration localEndpoint remoteEndpoint",
    "annotations tags debug shared binaryAnnotations",
)
zipkin_json_docs = st.one_of(json_values, st.lists(_zipkin_span, max_size=3))
# Deep nesting, where a recursive decoder runs out of stack: the client's fault, so a 4xx too.
deep_json = st.tuples(st.integers(1, 20_000), st.sampled_from(["[", '{"a":', '[{"traceId":'])).map(
    lambda t: (t[1] * t[0]).encode()
)


def _nest(numbers: list[int]) -> bytes:
    body = b""
    for number in numbers:
        body = _tag(number, 2) + _varint(len(body)) + body
    return body


deep_protobuf = st.lists(st.integers(1, 12), min_size=1, max_size=5000).map(_nest)
# Thrift structs in unknown fields (id 99 binary, delta 15 compact) nested n deep; the UDP variant
# after an emitBatch message header.
_NESTED_STRUCT = {"binary": b"\x0c\x00\x63", "compact": b"\xfc"}


def deep_thrift(protocol: str, message: bool = False) -> st.SearchStrategy[bytes]:
    header = b""
    if message:
        writer = writer_for(protocol)
        writer.write_message_begin("emitBatch", 4, 0)  # 4: ONEWAY
        header = writer.getvalue()
    return st.integers(1, 20_000).map(lambda n: header + _NESTED_STRUCT[protocol] * n)


# ----- the fuzzing

_ALLOWED = "a 2xx or 4xx answer"


def _survived(status: int) -> bool:
    return 200 <= status < 300 or 400 <= status < 500


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        protobuf_like,
        deep_protobuf,
        mutated((otlp_request(7), otlp_request(8))),
    ),
    content_type=st.sampled_from(["application/x-protobuf", "application/protobuf", "application/json"]),
    encoding=st.sampled_from(["", "identity", "gzip", "deflate", "br"]),
    compress=st.booleans(),  # really compress, or just claim to (garbage for the inflater)
)
def test_otlp_http_bytes(
    target: Target, body: bytes, content_type: str, encoding: str, compress: bool
) -> None:
    if compress and encoding == "gzip":
        body = gzip.compress(body)
    elif compress and encoding == "deflate":
        body = zlib.compress(body)
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    assert _survived(target.http("otlp_http", "/v1/traces", body, headers)), _ALLOWED


@FUZZ
@given(body=st.one_of(otlp_json.map(lambda d: json.dumps(d).encode()), deep_json))
def test_otlp_http_json(target: Target, body: bytes) -> None:
    status = target.http("otlp_http", "/v1/traces", body, {"Content-Type": "application/json"})
    assert _survived(status), _ALLOWED


@FUZZ
@given(body=st.one_of(st.binary(max_size=2048), protobuf_like, deep_protobuf, mutated((otlp_request(9),))))
def test_otlp_grpc(target: Target, body: bytes) -> None:
    assert target.rpc(OTLP_EXPORT, body) in SURVIVING_GRPC_CODES


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2048), protobuf_like, deep_protobuf, mutated((jaeger_post_spans(20),)))
)
def test_jaeger_grpc(target: Target, body: bytes) -> None:
    assert target.rpc(JAEGER_POST, body) in SURVIVING_GRPC_CODES


_ZIPKIN_BASES = (zipkin_json(21), zipkin_v1_json(22), zipkin_protobuf(23))


@FUZZ
@given(
    path=st.sampled_from(["/api/v2/spans", "/api/v1/spans"]),
    content_type=st.sampled_from(["application/json", "application/x-protobuf", "text/plain", ""]),
    body=st.one_of(
        st.binary(max_size=2048),
        protobuf_like,
        deep_protobuf,
        mutated(_ZIPKIN_BASES),
        zipkin_json_docs.map(lambda d: json.dumps(d).encode()),
        deep_json,
    ),
)
def test_zipkin(target: Target, path: str, content_type: str, body: bytes) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert _survived(target.http("zipkin", path, body, headers)), _ALLOWED


@FUZZ
@given(
    content_type=st.sampled_from(["application/x-thrift", "application/vnd.apache.thrift.binary"]),
    body=st.one_of(st.binary(max_size=2048), deep_thrift("binary"), mutated((jaeger_thrift(24),))),
)
def test_jaeger_thrift_http(target: Target, content_type: str, body: bytes) -> None:
    status = target.http("jaeger_thrift_http", "/api/traces", body, {"Content-Type": content_type})
    assert _survived(status), _ALLOWED


@pytest.mark.parametrize(
    ("receiver", "protocol"), [("jaeger_thrift_compact", "compact"), ("jaeger_thrift_binary", "binary")]
)
def test_jaeger_agent_udp(target: Target, receiver: str, protocol: str) -> None:
    """UDP has no answer: every datagram must be counted with an outcome, none of them "internal"."""
    before = sum(target.outcomes(receiver).values())
    sent = 0

    @FUZZ
    @given(
        datagram=st.one_of(
            st.binary(min_size=1, max_size=2048),
            deep_thrift(protocol, message=True),
            mutated((jaeger_datagram(25, protocol),)),
        )
    )
    def throw(datagram: bytes) -> None:
        nonlocal sent
        target.udp(receiver, datagram)
        sent += 1

    throw()
    wait_for(lambda: sum(target.outcomes(receiver).values()) >= before + sent, "every datagram's outcome")
    outcomes = target.outcomes(receiver)
    assert sum(outcomes.values()) == before + sent
    assert outcomes["internal"] == 0, outcomes


def test_after_the_fuzzing_known_spans_are_stored_exactly_once(target: Target) -> None:
    server = target.server
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["api"], timeout=10)
    conn.request("GET", "/ready")
    assert conn.getresponse().status == 200, "the server should still be ready"
    conn.close()
    for receiver in RECEIVERS:
        assert target.outcomes(receiver)["internal"] == 0, receiver
    assert server.stop() == 0, server.log()
    spans = server.stored_spans()
    stored = Counter(zip(spans["trace_id"].to_pylist(), spans["span_id"].to_pylist(), strict=True))
    assert {ids: stored[ids] for ids in target.known} == dict.fromkeys(target.known, 1)
    server.start()  # leave it running for whatever test comes next
