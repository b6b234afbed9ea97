"""Jaeger thrift (binary, compact) and gRPC api_v2 -> OTLP: protocols, mapping rules, hostile input."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from tracelake.codec.jaeger import (
    agent_datagram_to_otlp,
    grpc_post_spans_to_otlp,
    thrift_batch_to_otlp,
)
from tracelake.codec.jaeger import model as m
from tracelake.codec.jaeger import proto as jproto
from tracelake.codec.jaeger import thrift as t
from tracelake.errors import InvalidInputError

KIND = trace_pb2.Span
STATUS = trace_pb2.Status
MASK64 = 2**64 - 1

# ==================================================================================================
# helpers


def encode_batch(batch: m.Batch, protocol: str = "binary") -> bytes:
    w = t.writer_for(protocol)
    m.write_batch(w, batch)
    return w.getvalue()


def encode_datagram(batch: m.Batch, protocol: str, **kwargs: Any) -> bytes:
    w = t.writer_for(protocol)
    m.write_emit_batch(w, batch, **kwargs)
    return w.getvalue()


def value_of(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in kvs}


def typed_attrs(kvs: Any) -> dict[str, tuple[str, Any]]:
    return {kv.key: (kv.value.WhichOneof("value"), value_of(kv.value)) for kv in kvs}


def tag(key: str, value: Any) -> m.Tag:
    """A thrift Tag of the type ``value`` implies."""
    if isinstance(value, bool):
        return m.Tag(key, m.TAG_BOOL, v_bool=value)
    if isinstance(value, int):
        return m.Tag(key, m.TAG_LONG, v_long=value)
    if isinstance(value, float):
        return m.Tag(key, m.TAG_DOUBLE, v_double=value)
    if isinstance(value, bytes):
        return m.Tag(key, m.TAG_BINARY, v_binary=value)
    return m.Tag(key, m.TAG_STRING, v_str=value)


def span(**kw: Any) -> m.Span:
    base: dict[str, Any] = dict(
        trace_id_low=0x1112131415161718,
        trace_id_high=0x0102030405060708,
        span_id=0x2122232425262728,
        parent_span_id=0,
        operation_name="op",
        flags=1,
        start_time=1_700_000_000_000_000,
        duration=1500,
    )
    base.update(kw)
    return m.Span(**base)


def batch(*spans: m.Span, service: str = "svc", process_tags: list[m.Tag] | None = None) -> m.Batch:
    return m.Batch(m.Process(service, process_tags), list(spans))


def thrift_all_ways(b: m.Batch) -> list[ExportTraceServiceRequest]:
    """The same batch through the HTTP body and both UDP protocols: all three must agree."""
    results = [
        thrift_batch_to_otlp(encode_batch(b)),
        agent_datagram_to_otlp(encode_datagram(b, "compact"), "compact"),
        agent_datagram_to_otlp(encode_datagram(b, "binary"), "binary"),
    ]
    assert results[0] == results[1] == results[2]
    return results


def one_span(b: m.Batch) -> Any:
    req = thrift_all_ways(b)[0]
    assert len(req.resource_spans) == 1
    assert len(req.resource_spans[0].scope_spans) == 1
    (s,) = req.resource_spans[0].scope_spans[0].spans
    return s


# ==================================================================================================
# TBinaryProtocol and TCompactProtocol, byte by byte


def test_compact_varint_matches_the_spec_example() -> None:
    assert t.CompactReader(b"\xdf\x89\x03").read_varint() == 50399
    w = t.CompactWriter()
    w.write_varint(50399)
    assert w.getvalue() == b"\xdf\x89\x03"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b"\x00"),
        (-1, b"\x01"),
        (1, b"\x02"),
        (-2, b"\x03"),
        (2, b"\x04"),
        (-64, b"\x7f"),
        (64, b"\x80\x01"),
    ],
)
def test_compact_zigzag(value: int, wire: bytes) -> None:
    assert t.CompactReader(wire).read_i32() == value
    assert t.CompactReader(wire).read_i64() == value
    w = t.CompactWriter()
    w.write_i64(value)
    assert w.getvalue() == wire


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1, -(2**31), 2**31 - 1, 0x0102030405060708])
def test_compact_i64_extremes_round_trip(value: int) -> None:
    w = t.CompactWriter()
    w.write_i64(value)
    assert len(w.getvalue()) <= 10
    assert t.CompactReader(w.getvalue()).read_i64() == value


def test_compact_varint_longer_than_ten_bytes_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="varint"):
        t.CompactReader(b"\xff" * 11 + b"\x01").read_varint()


def test_doubles_are_little_endian_in_compact_and_big_endian_in_binary() -> None:
    assert t.CompactReader(struct.pack("<d", 1.5)).read_double() == 1.5
    assert t.BinaryReader(struct.pack(">d", 1.5)).read_double() == 1.5
    cw, bw = t.CompactWriter(), t.BinaryWriter()
    cw.write_double(-2.25)
    bw.write_double(-2.25)
    assert cw.getvalue() == struct.pack("<d", -2.25)
    assert bw.getvalue() == struct.pack(">d", -2.25)


def test_compact_field_deltas_short_and_long_form() -> None:
    # Tag{1: "k", 2: LONG, 6: 7} with field 6 as a delta (short form), then the same struct with
    # field 6 in the long form (type byte, then zigzag i16 id), and an unknown field 40 (long form).
    short = b"\x18\x01k" + b"\x15\x06" + b"\x46\x0e" + b"\x00"
    long_ = b"\x18\x01k" + b"\x15\x06" + b"\x06\x0c\x0e" + b"\x08\x50\x02zz" + b"\x00"
    expected = m.Tag("k", m.TAG_LONG, v_long=7)
    assert m.read_tag(t.CompactReader(short)) == expected
    assert m.read_tag(t.CompactReader(long_)) == expected


def test_compact_writer_uses_long_form_only_when_the_delta_does_not_fit() -> None:
    w = t.CompactWriter()
    w.write_struct_begin()
    w.write_field_begin(t.I32, 1)
    w.write_i32(1)
    w.write_field_begin(t.I32, 16)  # delta 15: still short
    w.write_i32(1)
    w.write_field_begin(t.I32, 32)  # delta 16: long
    w.write_i32(1)
    w.write_field_begin(t.I32, 2)  # going backwards: long
    w.write_i32(1)
    w.write_field_stop()
    assert w.getvalue() == b"\x15\x02" + b"\xf5\x02" + b"\x05\x40\x02" + b"\x05\x04\x02" + b"\x00"


def test_compact_nested_struct_restores_the_outer_field_id() -> None:
    # Log{1: ts, 2: [Tag{1: "a", 2: STRING, 3: "b"}]}; after the nested Tag the Log's last id is 2 again.
    w = t.CompactWriter()
    m.write_log(w, m.Log(5, [m.Tag("a", m.TAG_STRING, v_str="b")]))
    data = w.getvalue()
    assert data == b"\x16\x0a" + b"\x19\x1c" + b"\x18\x01a\x15\x00\x18\x01b\x00" + b"\x00"
    assert m.read_log(t.CompactReader(data)) == m.Log(5, [m.Tag("a", m.TAG_STRING, v_str="b")])


def test_compact_bool_lives_in_the_field_header() -> None:
    true_tag = b"\x18\x01k\x15\x04" + b"\x31" + b"\x00"  # field 5, type BOOLEAN_TRUE
    false_tag = b"\x18\x01k\x15\x04" + b"\x32" + b"\x00"  # field 5, type BOOLEAN_FALSE
    assert m.read_tag(t.CompactReader(true_tag)).v_bool is True
    assert m.read_tag(t.CompactReader(false_tag)).v_bool is False
    w = t.CompactWriter()
    m.write_tag(w, m.Tag("k", m.TAG_BOOL, v_bool=True))
    assert w.getvalue() == true_tag


def test_compact_bools_in_a_list_are_one_byte_each() -> None:
    # an unknown field 9 holding list<bool> [true, false, true]; element type written as 1 or 2
    for elem_type in (1, 2):
        data = b"\x18\x01k\x15\x00" + b"\x79" + bytes([0x30 | elem_type]) + b"\x01\x00\x01" + b"\x00"
        assert m.read_tag(t.CompactReader(data)) == m.Tag("k", m.TAG_STRING)
    r = t.CompactReader(b"\x32\x01\x00\x01")
    assert r.read_list_begin() == (t.BOOL, 3)
    assert [r.read_bool(), r.read_bool(), r.read_bool()] == [True, False, True]
    w = t.CompactWriter()
    w.write_list_begin(t.BOOL, 2)
    w.write_bool(True)
    w.write_bool(False)
    assert w.getvalue() == b"\x22\x01\x00"


@pytest.mark.parametrize(
    ("size", "header"), [(0, b"\x0c"), (14, b"\xec"), (15, b"\xfc\x0f"), (300, b"\xfc\xac\x02")]
)
def test_compact_list_header_short_and_long_form(size: int, header: bytes) -> None:
    w = t.CompactWriter()
    w.write_list_begin(t.STRUCT, size)
    assert w.getvalue() == header
    r = t.CompactReader(header + b"\x00" * size)
    assert r.read_list_begin() == (t.STRUCT, size)


@pytest.mark.parametrize("n_tags", [0, 1, 14, 15, 16, 300])
@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_tag_lists_of_every_header_form_round_trip(protocol: str, n_tags: int) -> None:
    b = batch(span(tags=[tag(f"k{i}", i) for i in range(n_tags)]))
    assert m.decode_batch(encode_batch(b, protocol), protocol) == b
    s = one_span(b)
    assert attrs(s.attributes) == {f"k{i}": i for i in range(n_tags)}


def test_binary_booleans_and_fields_byte_by_byte() -> None:
    data = (
        b"\x0b\x00\x01" + b"\x00\x00\x00\x01k"  # 1: string "k"
        b"\x08\x00\x02" + b"\x00\x00\x00\x02"  # 2: i32 BOOL
        b"\x02\x00\x05" + b"\x01"  # 5: bool true
        b"\x00"
    )
    assert m.read_tag(t.BinaryReader(data)) == m.Tag("k", m.TAG_BOOL, v_bool=True)
    w = t.BinaryWriter()
    m.write_tag(w, m.Tag("k", m.TAG_BOOL, v_bool=True))
    assert w.getvalue() == data


def test_binary_message_headers_strict_and_old() -> None:
    strict = b"\x80\x01\x00\x04" + b"\x00\x00\x00\x09emitBatch" + b"\x00\x00\x00\x07"
    old = b"\x00\x00\x00\x09emitBatch" + b"\x04" + b"\x00\x00\x00\x07"
    assert t.BinaryReader(strict).read_message_begin() == ("emitBatch", t.ONEWAY, 7)
    assert t.BinaryReader(old).read_message_begin() == ("emitBatch", t.ONEWAY, 7)
    w = t.BinaryWriter()
    w.write_message_begin("emitBatch", t.ONEWAY, 7)
    assert w.getvalue() == strict
    w = t.BinaryWriter(strict=False)
    w.write_message_begin("emitBatch", t.ONEWAY, 7)
    assert w.getvalue() == old


def test_compact_message_header() -> None:
    data = b"\x82\x81\x07\x09emitBatch"  # protocol id, type ONEWAY(4)<<5 | version 1, seq 7, name
    assert t.CompactReader(data).read_message_begin() == ("emitBatch", t.ONEWAY, 7)
    w = t.CompactWriter()
    w.write_message_begin("emitBatch", t.ONEWAY, 7)
    assert w.getvalue() == data


def test_old_style_binary_datagram_and_call_type_are_accepted() -> None:
    b = batch(span())
    w = t.BinaryWriter(strict=False)
    m.write_emit_batch(w, b, mtype=t.CALL, seqid=3)
    assert agent_datagram_to_otlp(w.getvalue(), "binary") == thrift_batch_to_otlp(encode_batch(b))


# ---------------------------------------------------------------- unknown fields of every shape


def _write_unknown_fields(w: t.ThriftWriter, first_id: int) -> None:
    """Fields a newer jaeger.thrift could add: every type, nested containers and structs."""
    fid = first_id
    for ttype, write in [
        (t.BOOL, lambda: w.write_bool(True)),
        (t.BOOL, lambda: w.write_bool(False)),
        (t.BYTE, lambda: w.write_byte(-7)),
        (t.I16, lambda: w.write_i16(-300)),
        (t.I32, lambda: w.write_i32(1 << 30)),
        (t.I64, lambda: w.write_i64(-(1 << 60))),
        (t.DOUBLE, lambda: w.write_double(3.25)),
        (t.STRING, lambda: w.write_string("unknown")),
        (t.UUID, lambda: w.write_uuid(bytes(range(16)))),
    ]:
        w.write_field_begin(ttype, fid)
        write()
        fid += 1
    # struct { 1: list<struct{1: bool, 2: map<string, list<i64>>}>, 2: set<bool> }
    w.write_field_begin(t.STRUCT, fid)
    w.write_struct_begin()
    w.write_field_begin(t.LIST, 1)
    w.write_list_begin(t.STRUCT, 2)
    for i in range(2):
        w.write_struct_begin()
        w.write_field_begin(t.BOOL, 1)
        w.write_bool(bool(i))
        w.write_field_begin(t.MAP, 2)
        w.write_map_begin(t.STRING, t.LIST, 2)
        for key in ("a", "b"):
            w.write_string(key)
            w.write_list_begin(t.I64, 3)
            for v in (1, -2, 3):
                w.write_i64(v)
        w.write_field_stop()
        w.write_struct_end()
    w.write_field_begin(t.SET, 2)
    w.write_list_begin(t.BOOL, 3)
    for v in (True, False, True):
        w.write_bool(v)
    w.write_field_begin(t.MAP, 3)
    w.write_map_begin(t.I32, t.I32, 0)
    w.write_field_stop()
    w.write_struct_end()


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_unknown_fields_of_every_type_are_skipped(protocol: str) -> None:
    """A Tag and a Batch with unknown fields before their stop byte decode as if they were not there."""
    expected_tag = m.Tag("k", m.TAG_DOUBLE, v_double=0.5)
    w = t.writer_for(protocol)
    w.write_struct_begin()
    w.write_field_begin(t.STRING, 1)
    w.write_string("k")
    w.write_field_begin(t.I32, 2)
    w.write_i32(m.TAG_DOUBLE)
    w.write_field_begin(t.DOUBLE, 4)
    w.write_double(0.5)
    _write_unknown_fields(w, 30)
    w.write_field_begin(t.DOUBLE, 1)  # a known id with the wrong type: skipped, as generated code does
    w.write_double(9.0)
    w.write_field_stop()
    w.write_struct_end()
    w.write_field_begin(t.I32, 99)  # bytes after the struct are not read
    assert m.read_tag(t.reader_for(protocol, w.getvalue())) == expected_tag

    # Batch{1: process, 3: seqNo, 4: stats struct, 2: spans} with unknown fields in between
    b = batch(span(tags=[expected_tag]))
    w = t.writer_for(protocol)
    w.write_struct_begin()
    w.write_field_begin(t.STRUCT, 1)
    m.write_process(w, b.process)
    w.write_field_begin(t.I64, 3)
    w.write_i64(42)
    w.write_field_begin(t.STRUCT, 4)  # ClientStats{1: i64, 2: i64, 3: i64}
    w.write_struct_begin()
    for fid in (1, 2, 3):
        w.write_field_begin(t.I64, fid)
        w.write_i64(fid)
    w.write_field_stop()
    w.write_struct_end()
    _write_unknown_fields(w, 10)
    w.write_field_begin(t.I32, 2)  # a known id with the wrong type
    w.write_i32(5)
    w.write_field_begin(t.LIST, 2)
    w.write_list_begin(t.STRUCT, 1)
    m.write_span(w, b.spans[0])
    w.write_field_stop()
    w.write_struct_end()
    decoded = m.decode_batch(w.getvalue(), protocol)
    assert decoded == m.Batch(b.process, b.spans, seq_no=42)


# ---------------------------------------------------------------- round trip of the model


def _tags() -> st.SearchStrategy[list[m.Tag]]:
    keys = st.text(max_size=8)
    one = st.one_of(
        st.builds(lambda k, v: m.Tag(k, m.TAG_STRING, v_str=v), keys, st.text(max_size=10)),
        st.builds(lambda k, v: m.Tag(k, m.TAG_DOUBLE, v_double=v), keys, st.floats(allow_nan=False)),
        st.builds(lambda k, v: m.Tag(k, m.TAG_BOOL, v_bool=v), keys, st.booleans()),
        st.builds(lambda k, v: m.Tag(k, m.TAG_LONG, v_long=v), keys, st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda k, v: m.Tag(k, m.TAG_BINARY, v_binary=v), keys, st.binary(max_size=10)),
    )
    return st.lists(one, max_size=17)


_I64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def thrift_spans(draw: Any) -> m.Span:
    return m.Span(
        trace_id_low=draw(_I64),
        trace_id_high=draw(st.sampled_from([0, 1, -1])) if draw(st.booleans()) else draw(_I64),
        span_id=draw(_I64),
        parent_span_id=draw(st.sampled_from([0])) if draw(st.booleans()) else draw(_I64),
        operation_name=draw(st.text(max_size=12)),
        flags=draw(st.integers(-(2**31), 2**31 - 1)),
        start_time=draw(st.integers(0, 2**62)),
        duration=draw(st.integers(0, 10**9)),
        references=draw(
            st.none() | st.lists(st.builds(m.SpanRef, st.sampled_from([0, 1]), _I64, _I64, _I64), max_size=3)
        ),
        tags=draw(st.none() | _tags()),
        logs=draw(st.none() | st.lists(st.builds(m.Log, _I64, _tags()), max_size=3)),
        incomplete=draw(st.none() | st.booleans()),
    )


thrift_batches = st.builds(
    m.Batch,
    st.builds(m.Process, st.text(max_size=10), st.none() | _tags()),
    st.lists(thrift_spans(), max_size=4),
    st.none() | _I64,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=thrift_batches, protocol=st.sampled_from(["binary", "compact"]))
def test_model_round_trips_through_both_protocols(b: m.Batch, protocol: str) -> None:
    assert m.decode_batch(encode_batch(b, protocol), protocol) == b
    assert m.decode_emit_batch(encode_datagram(b, protocol), protocol) == b
    # and the translation of the same batch does not depend on how it travelled
    if all(s.start_time + s.duration >= 0 for s in b.spans):
        thrift_all_ways(b)


# ==================================================================================================
# thrift -> OTLP, field by field


def test_ids_128_bit() -> None:
    s = one_span(batch(span()))
    assert s.trace_id == bytes.fromhex("01020304050607081112131415161718")
    assert s.span_id == bytes.fromhex("2122232425262728")
    assert s.parent_span_id == b""


def test_ids_64_bit_are_zero_padded_and_negative_i64_is_unsigned() -> None:
    s = one_span(batch(span(trace_id_high=0, trace_id_low=-1, span_id=-2, parent_span_id=-(2**63))))
    assert s.trace_id == b"\x00" * 8 + b"\xff" * 8
    assert s.span_id == b"\xff" * 7 + b"\xfe"
    assert s.parent_span_id == b"\x80" + b"\x00" * 7


def test_name_and_times_microseconds_to_nanoseconds() -> None:
    s = one_span(batch(span(operation_name="GET /über", start_time=1_700_000_000_123_456, duration=789)))
    assert s.name == "GET /über"
    assert s.start_time_unix_nano == 1_700_000_000_123_456_000
    assert s.end_time_unix_nano == 1_700_000_000_124_245_000


def test_negative_times_are_clamped_to_zero() -> None:
    s = one_span(batch(span(start_time=-5, duration=2)))
    assert s.start_time_unix_nano == 0
    assert s.end_time_unix_nano == 0


def test_tag_types_are_kept() -> None:
    tags = [
        tag("s", "v"),
        tag("d", 2.5),
        tag("b", False),
        tag("l", -(2**63)),
        tag("y", b"\x00\xff"),
        m.Tag("unknown", 9, v_str="x"),
        m.Tag("unset_long", m.TAG_LONG),  # type without its value: the zero value
        tag("dup", "first"),
        tag("dup", 2),
    ]
    s = one_span(batch(span(tags=tags)))
    assert typed_attrs(s.attributes) == {
        "s": ("string_value", "v"),
        "d": ("double_value", 2.5),
        "b": ("bool_value", False),
        "l": ("int_value", -(2**63)),
        "y": ("bytes_value", b"\x00\xff"),
        "unknown": ("string_value", '<Unknown Jaeger TagType "<UNSET>">'),
        "unset_long": ("int_value", 0),
        "dup": ("int_value", 2),
    }


def test_invalid_utf8_is_replaced_not_refused() -> None:
    w = t.BinaryWriter()
    b = batch(span(operation_name="PLACEHOLDER"))
    m.write_batch(w, b)
    data = w.getvalue().replace(b"PLACEHOLDER", b"bad\xff\xfe names")
    s = thrift_batch_to_otlp(data).resource_spans[0].scope_spans[0].spans[0]
    assert s.name == "bad\ufffd\ufffd names"


def test_process_to_resource() -> None:
    process_tags = [
        tag("hostname", "box-1"),
        tag("ip", "10.0.0.1"),
        tag("client-uuid", "abc"),
        tag("cores", 8),
        tag("jaeger.version", "Go-2.30.0"),
    ]
    req = thrift_all_ways(batch(span(), service="checkout", process_tags=process_tags))[0]
    assert typed_attrs(req.resource_spans[0].resource.attributes) == {
        "service.name": ("string_value", "checkout"),
        "ip": ("string_value", "10.0.0.1"),
        "client-uuid": ("string_value", "abc"),
        "cores": ("int_value", 8),
        "host.name": ("string_value", "box-1"),
        "opencensus.exporterversion": ("string_value", "Jaeger-Go-2.30.0"),
    }


def test_hostname_is_kept_when_host_name_is_already_there() -> None:
    req = thrift_all_ways(batch(span(), process_tags=[tag("host.name", "a"), tag("hostname", "b")]))[0]
    assert attrs(req.resource_spans[0].resource.attributes) == {
        "service.name": "svc",
        "host.name": "a",
        "hostname": "b",
    }


def test_hostname_keeps_its_type() -> None:
    req = thrift_all_ways(batch(span(), process_tags=[tag("hostname", 7)]))[0]
    assert typed_attrs(req.resource_spans[0].resource.attributes)["host.name"] == ("int_value", 7)


def test_empty_service_name_is_not_a_resource_attribute() -> None:
    req = thrift_all_ways(batch(span(), service=""))[0]
    assert len(req.resource_spans[0].resource.attributes) == 0


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("client", KIND.SPAN_KIND_CLIENT),
        ("server", KIND.SPAN_KIND_SERVER),
        ("producer", KIND.SPAN_KIND_PRODUCER),
        ("consumer", KIND.SPAN_KIND_CONSUMER),
        ("internal", KIND.SPAN_KIND_INTERNAL),
        ("SERVER", KIND.SPAN_KIND_UNSPECIFIED),
        ("rpc", KIND.SPAN_KIND_UNSPECIFIED),
        (3, KIND.SPAN_KIND_UNSPECIFIED),
    ],
)
def test_span_kind_tag_becomes_the_kind_and_is_removed(value: Any, kind: int) -> None:
    s = one_span(batch(span(tags=[tag("span.kind", value), tag("keep", 1)])))
    assert s.kind == kind
    assert attrs(s.attributes) == {"keep": 1}


def test_no_span_kind_is_unspecified() -> None:
    assert one_span(batch(span())).kind == KIND.SPAN_KIND_UNSPECIFIED


def _status(tags: list[m.Tag], kind: str | None = None) -> tuple[int, str, dict[str, Any], bool]:
    if kind is not None:
        tags = [tag("span.kind", kind), *tags]
    s = one_span(batch(span(tags=tags)))
    return s.status.code, s.status.message, attrs(s.attributes), s.HasField("status")


def test_error_true_is_error_with_empty_message() -> None:
    assert _status([tag("error", True), tag("k", "v")]) == (STATUS.STATUS_CODE_ERROR, "", {"k": "v"}, True)


def test_error_false_or_not_a_bool_stays_an_attribute() -> None:
    assert _status([tag("error", False)]) == (0, "", {"error": False}, False)
    assert _status([tag("error", "true")]) == (0, "", {"error": "true"}, False)


def test_error_true_takes_the_message_from_otel_status_description_or_http_status_message() -> None:
    assert _status([tag("error", True), tag("otel.status_description", "boom")])[:3] == (
        STATUS.STATUS_CODE_ERROR,
        "boom",
        {},
    )
    assert _status([tag("error", True), tag("http.status_message", "Bad Gateway")])[:3] == (
        STATUS.STATUS_CODE_ERROR,
        "Bad Gateway",
        {"http.status_message": "Bad Gateway"},
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("OK", STATUS.STATUS_CODE_OK),
        ("ERROR", STATUS.STATUS_CODE_ERROR),
        ("error", STATUS.STATUS_CODE_ERROR),
        ("Ok", STATUS.STATUS_CODE_OK),
        ("UNSET", STATUS.STATUS_CODE_UNSET),
        ("weird", STATUS.STATUS_CODE_UNSET),
    ],
)
def test_otel_status_code_and_description(code: str, expected: int) -> None:
    got = _status([tag("otel.status_code", code), tag("otel.status_description", "msg"), tag("k", 1)])
    assert got == (expected, "msg", {"k": 1}, True)


def test_error_tag_wins_over_otel_status_code_which_is_removed_anyway() -> None:
    got = _status([tag("otel.status_code", "OK"), tag("error", True), tag("otel.status_description", "d")])
    assert got[:3] == (STATUS.STATUS_CODE_ERROR, "d", {})


@pytest.mark.parametrize(
    ("http_code", "kind", "expected"),
    [
        (500, None, STATUS.STATUS_CODE_ERROR),
        ("503", "server", STATUS.STATUS_CODE_ERROR),
        (404, "client", STATUS.STATUS_CODE_ERROR),
        (404, "server", None),
        (404, None, STATUS.STATUS_CODE_ERROR),
        (200, "client", None),
        (399, None, STATUS.STATUS_CODE_ERROR),
        (99, None, STATUS.STATUS_CODE_ERROR),
        ("2x0", None, None),
        (1.0, None, None),
    ],
)
def test_http_status_code_fallback(http_code: Any, kind: str | None, expected: int | None) -> None:
    code, message, rest, has_status = _status(
        [tag("http.status_code", http_code), tag("http.status_message", "text")], kind
    )
    assert rest == {"http.status_code": http_code, "http.status_message": "text"}  # both are kept
    if expected is None:
        assert not has_status
    else:
        assert (code, message) == (expected, "text")


def test_logs_become_events() -> None:
    logs = [
        m.Log(1_700_000_000_000_500, [tag("event", "retry"), tag("attempt", 2), tag("why", "timeout")]),
        m.Log(1_700_000_000_000_900, [tag("message", "no event field")]),
        m.Log(1_700_000_000_001_000, []),
    ]
    s = one_span(batch(span(logs=logs)))
    assert [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events] == [
        ("retry", 1_700_000_000_000_500_000, {"attempt": 2, "why": "timeout"}),
        ("", 1_700_000_000_000_900_000, {"message": "no event field"}),
        ("", 1_700_000_000_001_000_000, {}),
    ]


def _links(s: Any) -> list[tuple[str, str, str]]:
    return [
        (lk.trace_id.hex(), lk.span_id.hex(), attrs(lk.attributes)["opentracing.ref_type"]) for lk in s.links
    ]


HI, LO = 0x0102030405060708, 0x1112131415161718
TRACE_HEX = "01020304050607081112131415161718"


def test_parent_span_id_and_its_child_of_ref_give_no_link() -> None:
    s = one_span(batch(span(parent_span_id=0x77, references=[m.SpanRef(m.CHILD_OF, LO, HI, 0x77)])))
    assert s.parent_span_id == (0x77).to_bytes(8, "big")
    assert list(s.links) == []


def test_follows_from_and_extra_child_of_references_become_links() -> None:
    refs = [
        m.SpanRef(m.CHILD_OF, LO, HI, 0x77),
        m.SpanRef(m.FOLLOWS_FROM, 5, 0, 0x88),
        m.SpanRef(m.CHILD_OF, LO, HI, 0x99),
    ]
    s = one_span(batch(span(parent_span_id=0x77, references=refs)))
    assert s.parent_span_id == (0x77).to_bytes(8, "big")
    assert _links(s) == [
        ("0" * 31 + "5", "0000000000000088", "follows_from"),
        (TRACE_HEX, "0000000000000099", "child_of"),
    ]


def test_parent_comes_from_the_first_child_of_ref_in_the_same_trace_when_parent_span_id_is_zero() -> None:
    refs = [
        m.SpanRef(m.CHILD_OF, 1, 2, 0x55),  # another trace: never the parent
        m.SpanRef(m.FOLLOWS_FROM, LO, HI, 0x66),
        m.SpanRef(m.CHILD_OF, LO, HI, 0x77),
    ]
    s = one_span(batch(span(references=refs)))
    assert s.parent_span_id == (0x77).to_bytes(8, "big")
    assert [link[1:] for link in _links(s)] == [
        ("0000000000000055", "child_of"),
        ("0000000000000066", "follows_from"),
    ]


def test_a_lone_follows_from_ref_is_both_the_parent_and_a_link() -> None:
    s = one_span(batch(span(references=[m.SpanRef(m.FOLLOWS_FROM, LO, HI, 0x66)])))
    assert s.parent_span_id == (0x66).to_bytes(8, "big")
    assert _links(s) == [(TRACE_HEX, "0000000000000066", "follows_from")]


def test_thrift_keeps_scope_and_tracestate_tags_as_attributes() -> None:
    tags = [tag("otel.scope.name", "lib"), tag("otel.scope.version", "1.0"), tag("w3c.tracestate", "a=b")]
    req = thrift_all_ways(batch(span(tags=tags)))[0]
    ss = req.resource_spans[0].scope_spans[0]
    assert not ss.HasField("scope")
    assert attrs(ss.spans[0].attributes) == {
        "otel.scope.name": "lib",
        "otel.scope.version": "1.0",
        "w3c.tracestate": "a=b",
    }
    assert ss.spans[0].trace_state == ""


def test_blank_spans_are_dropped_and_empty_batches_keep_their_resource() -> None:
    blank = m.Span(0, 0, 0, 0, "", 0, 0, 0)
    req = thrift_all_ways(batch(blank, span()))[0]
    assert len(req.resource_spans[0].scope_spans[0].spans) == 1
    req = thrift_all_ways(batch())[0]
    assert len(req.resource_spans) == 1
    assert attrs(req.resource_spans[0].resource.attributes) == {"service.name": "svc"}
    assert len(req.resource_spans[0].scope_spans) == 0


def test_many_spans_keep_their_order() -> None:
    spans = [span(span_id=i + 1, operation_name=f"op{i}") for i in range(50)]
    req = thrift_all_ways(batch(*spans))[0]
    assert [s.name for s in req.resource_spans[0].scope_spans[0].spans] == [f"op{i}" for i in range(50)]


# ==================================================================================================
# malformed thrift


def _valid_datagram(protocol: str) -> bytes:
    return encode_datagram(batch(span(tags=[tag("a", "b")])), protocol)


def test_wrong_method_name_is_refused() -> None:
    w = t.CompactWriter()
    w.write_message_begin("emitZipkinBatch", t.ONEWAY, 0)
    with pytest.raises(InvalidInputError, match="emitZipkinBatch"):
        agent_datagram_to_otlp(w.getvalue() + b"\x00", "compact")


@pytest.mark.parametrize("mtype", [t.REPLY, t.EXCEPTION, 0, 7])
def test_wrong_message_type_is_refused(mtype: int) -> None:
    b = batch(span())
    for protocol in ("binary", "compact"):
        with pytest.raises(InvalidInputError, match="type"):
            agent_datagram_to_otlp(encode_datagram(b, protocol, mtype=mtype), protocol)


def test_unknown_compact_protocol_id_or_version_is_refused() -> None:
    data = bytearray(_valid_datagram("compact"))
    data[0] = 0x80
    with pytest.raises(InvalidInputError, match="protocol id"):
        agent_datagram_to_otlp(bytes(data), "compact")
    data[0] = 0x82
    data[1] = (data[1] & 0xE0) | 2
    with pytest.raises(InvalidInputError, match="version"):
        agent_datagram_to_otlp(bytes(data), "compact")


def test_binary_datagram_with_a_bad_version_is_refused() -> None:
    data = b"\x80\x02\x00\x04" + _valid_datagram("binary")[4:]
    with pytest.raises(InvalidInputError, match="version"):
        agent_datagram_to_otlp(data, "binary")


def test_a_binary_datagram_read_as_compact_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        agent_datagram_to_otlp(_valid_datagram("binary"), "compact")


def test_unknown_protocol_name_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="protocol"):
        agent_datagram_to_otlp(_valid_datagram("binary"), "json")


def test_emit_batch_without_its_batch_is_refused() -> None:
    w = t.CompactWriter()
    w.write_message_begin("emitBatch", t.ONEWAY, 1)
    w.write_struct_begin()
    w.write_field_stop()
    with pytest.raises(InvalidInputError, match="no batch"):
        agent_datagram_to_otlp(w.getvalue(), "compact")


@pytest.mark.parametrize("protocol", ["binary", "compact"])
def test_every_truncation_of_a_valid_payload_is_refused(protocol: str) -> None:
    data = encode_datagram(batch(span(tags=[tag("a", 1.5)], logs=[m.Log(1, [tag("event", "e")])])), protocol)
    for n in range(len(data)):
        with pytest.raises(InvalidInputError):
            agent_datagram_to_otlp(data[:n], protocol)


def test_missing_required_fields_are_refused() -> None:
    w = t.BinaryWriter()
    w.write_struct_begin()
    w.write_field_begin(t.LIST, 2)
    w.write_list_begin(t.STRUCT, 0)
    w.write_field_stop()
    with pytest.raises(InvalidInputError, match=r"Batch\.process"):
        thrift_batch_to_otlp(w.getvalue())
    w = t.BinaryWriter()
    w.write_field_begin(t.STRING, 1)
    w.write_string("k")
    w.write_field_stop()
    with pytest.raises(InvalidInputError, match=r"Tag\.vType"):
        m.read_tag(t.BinaryReader(w.getvalue()))


@pytest.mark.parametrize("size", [2**31 - 1, 1000, 10])
def test_absurd_binary_list_sizes_fail_fast(size: int) -> None:
    # Batch{1: Process{1: "s"}, 2: list<Span> claiming `size` spans} with nothing after it
    data = (
        b"\x0c\x00\x01" + b"\x0b\x00\x01\x00\x00\x00\x01s\x00" + b"\x0f\x00\x02\x0c" + struct.pack(">i", size)
    )
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="list of"):
        thrift_batch_to_otlp(data)
    assert time.perf_counter() - start < 0.1


def test_absurd_compact_list_and_string_sizes_fail_fast() -> None:
    # Batch{1: Process{1: "s"}, 2: list<Span> long form claiming 2^31-1 spans}
    data = b"\x1c\x18\x01s\x00" + b"\x19\xfc\xff\xff\xff\xff\x07"
    with pytest.raises(InvalidInputError, match="list of"):
        m.decode_batch(data, "compact")
    # a string claiming 2^31-1 bytes
    with pytest.raises(InvalidInputError, match="truncated"):
        m.decode_batch(b"\x1c\x18\xff\xff\xff\xff\x07", "compact")
    # negative sizes
    with pytest.raises(InvalidInputError, match="negative"):
        m.decode_batch(b"\x1c\x18\xff\xff\xff\xff\x0f", "compact")
    with pytest.raises(InvalidInputError, match="negative"):
        m.decode_batch(b"\x0c\x00\x01\x0b\x00\x01\xff\xff\xff\xff", "binary")


def test_absurd_map_sizes_fail_fast() -> None:
    data = b"\x0c\x00\x01" + b"\x0d\x00\x09\x0b\x0b" + struct.pack(">i", 2**30)  # unknown map field
    with pytest.raises(InvalidInputError, match="map of"):
        thrift_batch_to_otlp(data)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    # an unknown field holding list<list<list<...>>> 10,000 deep (binary) / structs 10,000 deep (compact)
    binary = b"\x0c\x00\x01" + b"\x0f\x00\x09" + b"\x0f\x00\x00\x00\x01" * 10_000
    with pytest.raises(InvalidInputError, match="nested"):
        thrift_batch_to_otlp(binary)
    compact = b"\x1c" + b"\x9c" + b"\x1c" * 10_000
    with pytest.raises(InvalidInputError, match="nested"):
        m.decode_batch(compact, "compact")


def test_unknown_field_types_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="type"):
        thrift_batch_to_otlp(b"\x0c\x00\x01\x11\x00\x05\x00")  # type 17
    with pytest.raises(InvalidInputError, match="type"):
        m.decode_batch(b"\x1c\x1e\x00", "compact")  # compact type 14
    with pytest.raises(InvalidInputError, match="element type"):
        thrift_batch_to_otlp(b"\x0c\x00\x01\x0f\x00\x05\x01\x00\x00\x00\x01")  # list of type 1


def test_a_list_of_the_wrong_element_type_is_refused() -> None:
    # Batch{2: list<i32>[1]} where list<Span> is expected
    with pytest.raises(InvalidInputError, match="span list"):
        thrift_batch_to_otlp(b"\x0f\x00\x02\x08\x00\x00\x00\x01\x00\x00\x00\x01")


# ==================================================================================================
# gRPC api_v2


def _real_api_v2() -> dict[str, Any]:
    """model.proto/collector.proto as published (string fields, enums), built independently of the
    codec's own descriptors so a wire incompatibility between the two would show."""
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    pkg = "testjaeger.api_v2"
    fdp = descriptor_pb2.FileDescriptorProto(
        name="testjaeger/model.proto",
        package=pkg,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
    )
    value_type = fdp.enum_type.add(name="ValueType")
    for i, name in enumerate(["STRING", "BOOL", "INT64", "FLOAT64", "BINARY"]):
        value_type.value.add(name=name, number=i)
    ref_type = fdp.enum_type.add(name="SpanRefType")
    ref_type.value.add(name="CHILD_OF", number=0)
    ref_type.value.add(name="FOLLOWS_FROM", number=1)
    S, B, M, E = F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_MESSAGE, F.TYPE_ENUM
    ts, du = ".google.protobuf.Timestamp", ".google.protobuf.Duration"
    rep = F.LABEL_REPEATED
    schema: dict[str, list[tuple[str, int, int, str | None, bool]]] = {
        "KeyValue": [
            ("key", 1, S, None, False),
            ("v_type", 2, E, "ValueType", False),
            ("v_str", 3, S, None, False),
            ("v_bool", 4, F.TYPE_BOOL, None, False),
            ("v_int64", 5, F.TYPE_INT64, None, False),
            ("v_float64", 6, F.TYPE_DOUBLE, None, False),
            ("v_binary", 7, B, None, False),
        ],
        "Log": [("timestamp", 1, M, ts, False), ("fields", 2, M, "KeyValue", True)],
        "SpanRef": [
            ("trace_id", 1, B, None, False),
            ("span_id", 2, B, None, False),
            ("ref_type", 3, E, "SpanRefType", False),
        ],
        "Process": [("service_name", 1, S, None, False), ("tags", 2, M, "KeyValue", True)],
        "Span": [
            ("trace_id", 1, B, None, False),
            ("span_id", 2, B, None, False),
            ("operation_name", 3, S, None, False),
            ("references", 4, M, "SpanRef", True),
            ("flags", 5, F.TYPE_UINT32, None, False),
            ("start_time", 6, M, ts, False),
            ("duration", 7, M, du, False),
            ("tags", 8, M, "KeyValue", True),
            ("logs", 9, M, "Log", True),
            ("process", 10, M, "Process", False),
            ("process_id", 11, S, None, False),
            ("warnings", 12, S, None, True),
        ],
        "Batch": [("spans", 1, M, "Span", True), ("process", 2, M, "Process", False)],
        "PostSpansRequest": [("batch", 1, M, "Batch", False)],
    }
    for msg_name, fields in schema.items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, type_name, repeated in fields:
            f = msg.field.add(
                name=name, number=number, type=ftype, label=rep if repeated else F.LABEL_OPTIONAL
            )
            if type_name:
                f.type_name = type_name if type_name.startswith(".") else f".{pkg}.{type_name}"
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.{n}")) for n in schema}


API = _real_api_v2()
TID = bytes.fromhex(TRACE_HEX)


def kv(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return API["KeyValue"](key=key, v_type=1, v_bool=value)
    if isinstance(value, int):
        return API["KeyValue"](key=key, v_type=2, v_int64=value)
    if isinstance(value, float):
        return API["KeyValue"](key=key, v_type=3, v_float64=value)
    if isinstance(value, bytes):
        return API["KeyValue"](key=key, v_type=4, v_binary=value)
    return API["KeyValue"](key=key, v_type=0, v_str=value)


def pspan(**kw: Any) -> Any:
    base: dict[str, Any] = dict(
        trace_id=TID,
        span_id=bytes.fromhex("2122232425262728"),
        operation_name="op",
        flags=1,
        start_time=dict(seconds=1_700_000_000, nanos=123_456_789),
        duration=dict(seconds=1, nanos=500),
    )
    base.update(kw)
    return API["Span"](**base)


def post(*spans: Any, process: Any = None) -> ExportTraceServiceRequest:
    b = API["Batch"](spans=list(spans))
    if process is not None:
        b.process.CopyFrom(process)
    return grpc_post_spans_to_otlp(API["PostSpansRequest"](batch=b).SerializeToString())


def proc(service: str, *tags: Any) -> Any:
    return API["Process"](service_name=service, tags=list(tags))


def grpc_one_span(*spans: Any, **kw: Any) -> Any:
    req = post(*spans, **kw)
    assert len(req.resource_spans) == 1
    assert len(req.resource_spans[0].scope_spans) == 1
    return req.resource_spans[0].scope_spans[0].spans[0]


def test_grpc_ids_times_and_name() -> None:
    s = grpc_one_span(pspan(), process=proc("svc"))
    assert s.trace_id == TID
    assert s.span_id == bytes.fromhex("2122232425262728")
    assert s.name == "op"
    assert s.start_time_unix_nano == 1_700_000_000_123_456_789
    assert s.end_time_unix_nano == 1_700_000_001_123_457_289
    assert s.parent_span_id == b""


def test_grpc_64_bit_trace_id_is_zero_padded() -> None:
    s = grpc_one_span(pspan(trace_id=bytes.fromhex("1112131415161718")), process=proc("svc"))
    assert s.trace_id == b"\x00" * 8 + bytes.fromhex("1112131415161718")


@pytest.mark.parametrize(("field", "value"), [("trace_id", b"\x01" * 12), ("span_id", b"\x01" * 4)])
def test_grpc_ids_of_the_wrong_length_are_refused(field: str, value: bytes) -> None:
    with pytest.raises(InvalidInputError, match=field):
        post(pspan(**{field: value}), process=proc("svc"))


def test_grpc_tag_types() -> None:
    tags = [
        kv("s", "v"),
        kv("b", True),
        kv("i", -(2**63)),
        kv("d", -0.5),
        kv("y", b"\x01\x02"),
        API["KeyValue"](key="u", v_type=7, v_str="x"),
    ]
    s = grpc_one_span(pspan(tags=tags), process=proc("svc"))
    assert typed_attrs(s.attributes) == {
        "s": ("string_value", "v"),
        "b": ("bool_value", True),
        "i": ("int_value", -(2**63)),
        "d": ("double_value", -0.5),
        "y": ("bytes_value", b"\x01\x02"),
        "u": ("string_value", '<Unknown Jaeger TagType "7">'),
    }


def test_grpc_resource_kind_status_events() -> None:
    process = proc("frontend", kv("hostname", "h"), kv("ip", "1.2.3.4"))
    logs = [API["Log"](timestamp=dict(seconds=5, nanos=6), fields=[kv("event", "x"), kv("n", 1)])]
    tags = [
        kv("span.kind", "client"),
        kv("otel.status_code", "ERROR"),
        kv("otel.status_description", "down"),
        kv("w3c.tracestate", "vendor=1"),
        kv("keep", "me"),
    ]
    req = post(pspan(tags=tags, logs=logs), process=process)
    assert attrs(req.resource_spans[0].resource.attributes) == {
        "service.name": "frontend",
        "ip": "1.2.3.4",
        "host.name": "h",
    }
    s = req.resource_spans[0].scope_spans[0].spans[0]
    assert s.kind == KIND.SPAN_KIND_CLIENT
    assert (s.status.code, s.status.message) == (STATUS.STATUS_CODE_ERROR, "down")
    assert s.trace_state == "vendor=1"
    assert attrs(s.attributes) == {"keep": "me"}
    assert [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in s.events] == [
        ("x", 5_000_000_006, {"n": 1})
    ]


def test_grpc_error_tag() -> None:
    s = grpc_one_span(pspan(tags=[kv("error", True)]), process=proc("svc"))
    assert (s.status.code, s.status.message) == (STATUS.STATUS_CODE_ERROR, "")
    assert len(s.attributes) == 0


def test_grpc_parent_is_the_first_child_of_ref_and_other_refs_are_links() -> None:
    other = bytes(range(16))
    refs = [
        API["SpanRef"](trace_id=other, span_id=b"\x00" * 7 + b"\x01", ref_type=0),
        API["SpanRef"](trace_id=TID, span_id=b"\x00" * 7 + b"\x02", ref_type=1),
        API["SpanRef"](trace_id=TID, span_id=b"\x00" * 7 + b"\x03", ref_type=0),
        API["SpanRef"](trace_id=TID, span_id=b"\x00" * 7 + b"\x04", ref_type=0),
    ]
    s = grpc_one_span(pspan(references=refs), process=proc("svc"))
    assert s.parent_span_id == b"\x00" * 7 + b"\x03"
    assert _links(s) == [
        (other.hex(), "0000000000000001", "child_of"),
        (TRACE_HEX, "0000000000000002", "follows_from"),
        (TRACE_HEX, "0000000000000004", "child_of"),
    ]


def test_grpc_parent_ref_with_a_64_bit_trace_id_matches_the_padded_span_trace_id() -> None:
    short = bytes.fromhex("1112131415161718")
    ref = API["SpanRef"](trace_id=short, span_id=b"\x00" * 7 + b"\x09", ref_type=0)
    s = grpc_one_span(pspan(trace_id=b"\x00" * 8 + short, references=[ref]), process=proc("svc"))
    assert s.parent_span_id == b"\x00" * 7 + b"\x09"
    assert list(s.links) == []


def test_grpc_scope_tags_become_the_scope() -> None:
    a = pspan(
        span_id=b"\x00" * 7 + b"\x01",
        tags=[kv("otel.scope.name", "lib-a"), kv("otel.scope.version", "1.2"), kv("k", 1)],
    )
    b = pspan(
        span_id=b"\x00" * 7 + b"\x02",
        tags=[kv("otel.library.name", "lib-b"), kv("otel.library.version", "0.1")],
    )
    c = pspan(span_id=b"\x00" * 7 + b"\x03")
    d = pspan(
        span_id=b"\x00" * 7 + b"\x04", tags=[kv("otel.scope.version", "9"), kv("otel.scope.name", "lib-a")]
    )
    e = pspan(
        span_id=b"\x00" * 7 + b"\x05", tags=[kv("otel.scope.name", "lib-a"), kv("otel.scope.version", "1.2")]
    )
    req = post(a, b, c, d, e, process=proc("svc"))
    scopes = [
        (
            ss.scope.name,
            ss.scope.version,
            [sp.span_id[-1] for sp in ss.spans],
            [attrs(sp.attributes) for sp in ss.spans],
        )
        for ss in req.resource_spans[0].scope_spans
    ]
    assert scopes == [
        ("lib-a", "1.2", [1, 5], [{"k": 1}, {}]),
        ("lib-b", "0.1", [2], [{}]),
        ("", "", [3], [{}]),
        ("lib-a", "9", [4], [{}]),
    ]


def test_grpc_scope_version_without_a_name_stays_an_attribute() -> None:
    s = grpc_one_span(pspan(tags=[kv("otel.scope.version", "1")]), process=proc("svc"))
    assert attrs(s.attributes) == {"otel.scope.version": "1"}


def test_grpc_span_process_overrides_the_batch_process() -> None:
    batch_process = proc("batch-svc", kv("env", "prod"))
    other = proc("span-svc", kv("hostname", "h2"))
    spans = [
        pspan(span_id=b"\x00" * 7 + b"\x01"),
        pspan(span_id=b"\x00" * 7 + b"\x02", process=other),
        pspan(span_id=b"\x00" * 7 + b"\x03"),
        pspan(span_id=b"\x00" * 7 + b"\x04", process=proc("span-svc", kv("hostname", "h2"))),
        pspan(span_id=b"\x00" * 7 + b"\x05", process=batch_process),
    ]
    req = post(*spans, process=batch_process)
    got = [
        (attrs(rs.resource.attributes), [sp.span_id[-1] for ss in rs.scope_spans for sp in ss.spans])
        for rs in req.resource_spans
    ]
    assert got == [
        ({"service.name": "batch-svc", "env": "prod"}, [1, 3, 5]),
        ({"service.name": "span-svc", "host.name": "h2"}, [2, 4]),
    ]


def test_grpc_batch_without_a_process_and_spans_that_all_have_one() -> None:
    req = post(pspan(process=proc("a")), pspan(process=proc("b")))
    assert [attrs(rs.resource.attributes) for rs in req.resource_spans] == [
        {"service.name": "a"},
        {"service.name": "b"},
    ]


def test_grpc_no_service_name_marker_gives_an_empty_resource() -> None:
    req = post(pspan(), process=proc("OTLPResourceNoServiceName", kv("k", "v")))
    assert len(req.resource_spans[0].resource.attributes) == 0


def test_grpc_blank_spans_are_dropped() -> None:
    go_zero = API["Span"](
        trace_id=b"\x00" * 16,
        span_id=b"\x00" * 8,
        start_time=dict(seconds=-62135596800),
        duration={},
    )
    req = post(go_zero, API["Span"](), pspan(), process=proc("svc"))
    assert len(req.resource_spans[0].scope_spans[0].spans) == 1


def test_grpc_invalid_utf8_is_replaced() -> None:
    raw = post(pspan(operation_name="PLACEHOLDER"), process=proc("svc"))
    assert raw.resource_spans[0].scope_spans[0].spans[0].name == "PLACEHOLDER"
    b = API["Batch"](spans=[pspan(operation_name="PLACEHOLDER")], process=proc("svc"))
    data = API["PostSpansRequest"](batch=b).SerializeToString().replace(b"PLACEHOLDER", b"bad\xffname...")
    s = grpc_post_spans_to_otlp(data).resource_spans[0].scope_spans[0].spans[0]
    assert s.name == "bad\ufffdname..."


def test_grpc_codec_messages_are_wire_compatible_with_the_published_schema() -> None:
    b = API["Batch"](
        spans=[pspan(tags=[kv("a", 1)], warnings=["w"], process_id="p1")], process=proc("svc", kv("x", "y"))
    )
    data = API["PostSpansRequest"](batch=b).SerializeToString()
    ours = jproto.parse_post_spans_request(data)
    assert ours.SerializeToString() == data
    assert ours.batch.spans[0].operation_name == b"op"
    assert ours.batch.spans[0].warnings == [b"w"]


@pytest.mark.parametrize("data", [b"\x0a\x05\x0a\x03", b"\xff\xff\xff", b"\x0a\x80\x80\x80\x80\x10", b"\x0b"])
def test_grpc_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="PostSpansRequest"):
        grpc_post_spans_to_otlp(data)


def test_grpc_empty_request_gives_an_empty_export() -> None:
    assert grpc_post_spans_to_otlp(b"") == ExportTraceServiceRequest()


# ==================================================================================================
# fuzz: truncations and bit flips never crash or hang


def _rich_batch() -> m.Batch:
    return batch(
        span(
            parent_span_id=3,
            references=[m.SpanRef(m.FOLLOWS_FROM, 1, 2, 3), m.SpanRef(m.CHILD_OF, LO, HI, 9)],
            tags=[
                tag("span.kind", "server"),
                tag("error", True),
                tag("d", 1.5),
                tag("y", b"\x00"),
                tag("n", -3),
            ],
            logs=[m.Log(10, [tag("event", "e"), tag("k", "v")]), m.Log(11, [])],
            incomplete=False,
        ),
        span(span_id=7, tags=[tag(f"t{i}", i) for i in range(20)]),
        process_tags=[tag("hostname", "h"), tag("jaeger.version", "Go-2.30")],
    )


_THRIFT_CASES = {
    "http": (encode_batch(_rich_batch()), thrift_batch_to_otlp),
    "compact": (encode_datagram(_rich_batch(), "compact"), lambda d: agent_datagram_to_otlp(d, "compact")),
    "binary": (encode_datagram(_rich_batch(), "binary"), lambda d: agent_datagram_to_otlp(d, "binary")),
}
_GRPC_PAYLOAD = API["PostSpansRequest"](
    batch=API["Batch"](
        spans=[
            pspan(
                tags=[kv("otel.scope.name", "s"), kv("k", 1.5), kv("y", b"\x01")],
                references=[API["SpanRef"](trace_id=TID, span_id=b"\x00" * 7 + b"\x02", ref_type=1)],
                logs=[API["Log"](timestamp=dict(seconds=1), fields=[kv("event", "e")])],
            ),
            pspan(process=proc("other", kv("hostname", "x"))),
        ],
        process=proc("svc", kv("a", True)),
    )
).SerializeToString()
_CASES = {**_THRIFT_CASES, "grpc": (_GRPC_PAYLOAD, grpc_post_spans_to_otlp)}


def _survives(fn: Any, data: bytes) -> None:
    try:
        result = fn(data)
    except InvalidInputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(result, ExportTraceServiceRequest)
    result.SerializeToString()  # every field holds a value OTLP can carry


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(sorted(_CASES)),
    cut=st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    insert=st.binary(max_size=6),
)
def test_fuzz_truncations_and_bit_flips(
    case: str, cut: int, flips: list[tuple[int, int]], insert: bytes
) -> None:
    payload, fn = _CASES[case]
    data = bytearray(payload)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if insert:
        pos = cut % (len(data) + 1)
        data[pos:pos] = insert
    else:
        del data[cut % (len(data) + 1) :]
    start = time.perf_counter()
    _survives(fn, bytes(data))
    assert time.perf_counter() - start < 1.0


@settings(max_examples=150, deadline=None)
@given(case=st.sampled_from(sorted(_CASES)), data=st.binary(max_size=200))
def test_fuzz_random_bytes(case: str, data: bytes) -> None:
    _survives(_CASES[case][1], data)


def test_valid_fuzz_seeds_decode() -> None:
    for payload, fn in _CASES.values():
        assert len(fn(payload).resource_spans) >= 1
