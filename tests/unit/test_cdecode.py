"""The compiled OTLP decoder against the pure-Python reference, on valid, reordered and broken input."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tracelake.codec import assemble as assemble_mod
from tracelake.codec import decoder
from tracelake.codec.pydecode import decode_request_py
from tracelake.codec.raw import DEDICATED, FIXED_COLUMNS, VAR_COLUMNS, RawSpans
from tracelake.errors import InvalidInputError
from tracelake.model.schema import ATTRIBUTE_TYPE, DEDICATED_SPAN_ATTRIBUTES, AttrType
from tracelake.otlp.wire import encode_varint

cdecode = pytest.importorskip("tracelake.codec.cdecode", reason="the C extension is not built")
decode_request_c = cdecode.decode_request_c
DEDICATED_COLUMNS = [column for _, column, _ in DEDICATED]

# ------------------------------------------------------------------------------------------------
# random requests: the shared strategy when present, else a local one


def _local_any_value(draw, depth: int = 0) -> AnyValue | None:
    kind = draw(
        st.sampled_from(["str", "bool", "int", "double", "bytes", "array", "kvlist", "none", "unset"])
    )
    if kind == "unset":
        return None
    value = AnyValue()
    if kind == "str":
        value.string_value = draw(st.text(max_size=12))
    elif kind == "bool":
        value.bool_value = draw(st.booleans())
    elif kind == "int":
        value.int_value = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "double":
        value.double_value = draw(st.floats(allow_nan=True, allow_infinity=True))
    elif kind == "bytes":
        value.bytes_value = draw(st.binary(max_size=12))
    elif kind == "array":
        value.array_value.SetInParent()
        for _ in range(draw(st.integers(0, 3 if depth < 2 else 0))):
            item = _local_any_value(draw, depth + 1)
            value.array_value.values.add().CopyFrom(item if item is not None else AnyValue())
    elif kind == "kvlist":
        value.kvlist_value.SetInParent()
        for _ in range(draw(st.integers(0, 3 if depth < 2 else 0))):
            value.kvlist_value.values.add().CopyFrom(_local_key_value(draw, depth + 1))
    else:  # an AnyValue with no member set
        pass
    return value


def _local_key_value(draw, depth: int = 0) -> KeyValue:
    kv = KeyValue(key=draw(st.text(max_size=10)))
    value = _local_any_value(draw, depth)
    if value is not None:
        kv.value.CopyFrom(value)
    return kv


@st.composite
def _local_requests(draw) -> ExportTraceServiceRequest:
    ids = st.binary(max_size=17)
    u32 = st.integers(0, 2**32 - 1)
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rs = req.resource_spans.add(schema_url=draw(st.text(max_size=8)))
        if draw(st.booleans()):
            rs.resource.SetInParent()
            for _ in range(draw(st.integers(0, 3))):
                rs.resource.attributes.add().CopyFrom(_local_key_value(draw))
        for _ in range(draw(st.integers(0, 3))):
            ss = rs.scope_spans.add(schema_url=draw(st.text(max_size=8)))
            if draw(st.booleans()):
                ss.scope.name = draw(st.text(max_size=8))
                ss.scope.version = draw(st.text(max_size=4))
            for _ in range(draw(st.integers(0, 4))):
                span = ss.spans.add(
                    trace_id=draw(ids),
                    span_id=draw(ids),
                    parent_span_id=draw(ids),
                    trace_state=draw(st.text(max_size=8)),
                    name=draw(st.text(max_size=12)),
                    kind=draw(st.integers(-(2**31), 2**31 - 1)),
                    start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
                    end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
                    dropped_attributes_count=draw(u32),
                    dropped_events_count=draw(u32),
                    dropped_links_count=draw(u32),
                    flags=draw(u32),
                )
                for _ in range(draw(st.integers(0, 5))):
                    span.attributes.add().CopyFrom(_local_key_value(draw))
                for _ in range(draw(st.integers(0, 2))):
                    event = span.events.add(name=draw(st.text(max_size=6)), time_unix_nano=draw(u32))
                    if draw(st.booleans()):
                        event.attributes.add().CopyFrom(_local_key_value(draw))
                for _ in range(draw(st.integers(0, 2))):
                    span.links.add(trace_id=draw(ids), span_id=draw(ids), flags=draw(u32))
                if draw(st.booleans()):
                    span.status.message = draw(st.text(max_size=8))
                    span.status.code = draw(st.integers(-(2**31), 2**31 - 1))
    return req


try:
    from tests.strategies import export_requests as _shared_requests
except ImportError:  # not written yet: the local strategy alone
    _shared_requests = None


def requests() -> st.SearchStrategy[ExportTraceServiceRequest]:
    if _shared_requests is None:
        return _local_requests()
    return st.one_of(_shared_requests(), _local_requests())


request_bytes = requests().map(lambda req: req.SerializeToString())

# ------------------------------------------------------------------------------------------------
# wire-level helpers to build non-canonical encodings


_varint = encode_varint


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, int, bytes]]:
    """A valid message as (field number, wire type, value) with the value in wire form (minus length)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        wt = tag & 7
        if wt == 0:
            _, end = _read_varint(buf, pos)
            value, pos = buf[pos:end], end
        elif wt == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wt == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        out.append((tag >> 3, wt, value))
    return out


def _field(num: int, wt: int, value: bytes) -> bytes:
    head = _varint(num << 3 | wt)
    return head + (_varint(len(value)) + value if wt == 2 else value)


def _emit(fields: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(_field(*f) for f in fields)


# Which length-delimited fields of each message the decoder walks into (resource/scope are copied raw).
_CHILDREN = {
    "request": {1: "resource_spans"},
    "resource_spans": {2: "scope_spans"},
    "scope_spans": {2: "span"},
    "span": {9: "key_value", 15: "status"},
    "key_value": {2: "any_value"},
    "any_value": {},
    "status": {},
}


def _rewrite(buf: bytes, level: str, edit) -> bytes:
    """Apply ``edit(level, fields) -> fields`` to a message and, depth first, to every walked child."""
    fields = []
    for num, wt, value in _fields(buf):
        child = _CHILDREN[level].get(num) if wt == 2 else None
        fields.append((num, wt, _rewrite(value, child, edit) if child else value))
    return _emit(edit(level, fields))


def _shuffle_keeping_repeats(rng: random.Random):
    """Permute fields, keeping the relative order of fields with the same number (order matters)."""

    def edit(level, fields):
        order = [num for num, _, _ in fields]
        rng.shuffle(order)
        queues: dict[int, list] = {}
        for f in fields:
            queues.setdefault(f[0], []).append(f)
        return [queues[num].pop(0) for num in order]

    return edit


def _unknown_field(rng: random.Random) -> tuple[int, int, bytes]:
    num = rng.choice([17, 50, 99, 1000, 536870911])  # unused by every walked message
    wt = rng.choice([0, 1, 2, 5])
    if wt == 0:
        return num, wt, _varint(rng.getrandbits(rng.choice([1, 7, 35, 64])))
    if wt == 1:
        return num, wt, rng.randbytes(8)
    if wt == 5:
        return num, wt, rng.randbytes(4)
    return num, wt, rng.randbytes(rng.randrange(0, 20))


def _insert_unknown(rng: random.Random):
    def edit(level, fields):
        fields = list(fields)
        for _ in range(rng.randrange(0, 3)):
            fields.insert(rng.randrange(len(fields) + 1), _unknown_field(rng))
        return fields

    return edit


def _assert_same(data: bytes, expected_from: bytes | None = None) -> None:
    got = decode_request_c(data)
    want = decode_request_py(data if expected_from is None else expected_from)
    assert got.n_spans == want.n_spans and got.n_attrs == want.n_attrs
    for name in VAR_COLUMNS:
        assert got.var[name] == want.var[name], name
    for name in FIXED_COLUMNS:
        assert got.fixed[name] == want.fixed[name], name
    for column in DEDICATED_COLUMNS:
        assert got.dedicated[column] == want.dedicated[column], column
    assert got == want


# ------------------------------------------------------------------------------------------------
# equivalence with the reference


_HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_REWRITES = settings(_HYPOTHESIS, max_examples=80)


@_HYPOTHESIS
@given(request_bytes)
def test_matches_reference(data: bytes) -> None:
    _assert_same(data)


@_REWRITES
@given(request_bytes, st.randoms(use_true_random=False))
def test_field_order_does_not_matter(data: bytes, rng: random.Random) -> None:
    _assert_same(_rewrite(data, "request", _shuffle_keeping_repeats(rng)), expected_from=data)


@_REWRITES
@given(request_bytes, st.randoms(use_true_random=False))
def test_unknown_fields_are_skipped(data: bytes, rng: random.Random) -> None:
    _assert_same(_rewrite(data, "request", _insert_unknown(rng)), expected_from=data)


def test_realistic_synthetic_requests() -> None:
    synth = pytest.importorskip("tracelake.synth")
    for seed in range(3):
        cfg = synth.SynthConfig(traces=150, seed=seed, error_rate=0.3, start_unix_nano=1_700_000_000 * 10**9)
        for data in synth.generate_request_bytes(cfg):
            _assert_same(data)


def test_every_field_by_hand() -> None:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.add(key="service.name").value.string_value = "checkout"
    rs.resource.dropped_attributes_count = 2
    ss = rs.scope_spans.add(schema_url="scope-url")
    ss.scope.name, ss.scope.version = "io.opentelemetry.http", "1.0"
    span = ss.spans.add(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        parent_span_id=bytes(range(8, 16)),
        trace_state="vendor=1",
        name="GET /cart",
        kind=-3,  # negative enum values are 10-byte varints
        start_time_unix_nano=2**64 - 1,
        end_time_unix_nano=1,
        dropped_attributes_count=2**32 - 1,
        dropped_events_count=7,
        dropped_links_count=9,
        flags=0x301,
    )
    span.status.code, span.status.message = 2, "boom"
    attrs = span.attributes
    attrs.add(key="s").value.string_value = "ünïcode"
    attrs.add(key="b").value.bool_value = True
    attrs.add(key="i").value.int_value = -(2**63)
    attrs.add(key="d").value.double_value = float("-inf")
    attrs.add(key="y").value.bytes_value = b"\x00\xff"
    attrs.add(key="a").value.array_value.values.add(string_value="x")
    attrs.add(key="k").value.kvlist_value.values.add(key="z").value.int_value = 3
    attrs.add(key="no-value")
    attrs.add(key="unset-any").value.SetInParent()
    attrs.add(key="strindex").value.string_value_strindex = 4  # a oneof member with no column: EMPTY
    span.events.add(name="exception", time_unix_nano=5).attributes.add(key="e").value.int_value = 1
    span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    ss.spans.add()  # a span with nothing set
    req.resource_spans.add()  # no resource, no scopes
    req.resource_spans.add().scope_spans.add()  # no scope, no spans
    data = req.SerializeToString()
    _assert_same(data)
    _assert_same(bytearray(data))
    _assert_same(memoryview(data))
    raw = decode_request_c(data)
    assert raw.n_spans == 2 and raw.n_attrs == 10
    assert list(raw.array("attr_type")) == [1, 2, 3, 4, 5, 6, 7, 0, 0, 0]
    assert list(raw.array("kind")) == [-3, 0]
    assert raw.resources[1:] == [b"", b""] and raw.scopes[1] == b""


def test_empty_input() -> None:
    _assert_same(b"")
    assert decode_request_c(b"").n_spans == 0


# ------------------------------------------------------------------------------------------------
# protobuf merge semantics on non-canonical input


def _span(*fields: bytes) -> bytes:
    scope_spans = _field(2, 2, b"".join(fields))
    return _field(1, 2, _field(2, 2, scope_spans))


def _attr(*value_fields: bytes, key: bytes = b"k") -> bytes:
    kv = _field(1, 2, key) + b"".join(_field(2, 2, v) for v in value_fields)
    return _field(9, 2, kv)


def test_scalars_last_one_wins() -> None:
    data = _span(
        _field(5, 2, b"first"),
        _field(6, 0, _varint(1)),
        _field(5, 2, b"second"),
        _field(6, 0, _varint(2**64 - 1)),
        _field(16, 5, b"\x01\x00\x00\x00"),
        _field(16, 5, b"\x02\x00\x00\x00"),
        _field(15, 2, _field(2, 2, b"msg") + _field(3, 0, _varint(1))),
        _field(15, 2, _field(3, 0, _varint(2))),  # merges: keeps the message, replaces the code
    )
    _assert_same(data)
    raw = decode_request_c(data)
    assert raw.var["name"][1] == b"second" and raw.var["status_message"][1] == b"msg"
    assert list(raw.array("kind")) == [-1] and list(raw.array("status_code")) == [2]


def test_wide_varints_truncate_like_protobuf() -> None:
    data = _span(
        _field(6, 0, _varint(2**32 + 5)),  # int32 enum: low 32 bits
        _field(10, 0, _varint(2**40 + 7)),  # uint32: low 32 bits
        _attr(_field(2, 0, _varint(256))),  # bool: any non-zero varint is true
        _attr(_field(2, 0, _varint(2**63))),
        _attr(_field(3, 0, _varint(2**64 - 1))),  # int64: two's complement
    )
    _assert_same(data)
    raw = decode_request_c(data)
    assert list(raw.array("kind")) == [5] and list(raw.array("dropped_attributes_count")) == [7]
    assert list(raw.array("attr_int")) == [1, 1, -1]


def test_oneof_later_member_replaces_earlier() -> None:
    s = _field(1, 2, b"text")
    i = _field(3, 0, _varint(42))
    arr = _field(5, 2, _field(1, 2, _field(3, 0, _varint(1))))
    arr2 = _field(5, 2, _field(1, 2, _field(3, 0, _varint(2))))
    kvl = _field(6, 2, _field(1, 2, _field(1, 2, b"x")))
    raw_bytes = _field(7, 2, b"\x01\x02")
    cases = [
        (s + i,),
        (i + s,),
        (arr + s,),
        (s + arr,),
        (arr + arr2,),  # the same message member twice: merged
        (arr, arr2),  # two KeyValue.value fields merge into one AnyValue
        (arr + raw_bytes + arr2,),  # a different member in between: replaced
        (kvl + arr,),
        (raw_bytes + raw_bytes,),
        (s + _field(8, 0, _varint(3)),),  # string_value_strindex: EMPTY
        (s, b""),  # an empty value field merges nothing
    ]
    data = _span(*[_attr(*case) for case in cases])
    _assert_same(data)
    raw = decode_request_c(data)
    assert list(raw.array("attr_type")) == [3, 1, 1, 6, 6, 6, 6, 6, 5, 0, 1]


def test_resource_and_scope_occurrences_concatenate() -> None:
    kv = KeyValue(key="a")
    kv.value.string_value = "b"
    part = _field(1, 2, kv.SerializeToString())  # Resource.attributes / InstrumentationScope.name
    scope_spans = _field(1, 2, _field(1, 2, b"lib")) + _field(2, 2, b"") + _field(1, 2, _field(2, 2, b"v1"))
    resource_spans = _field(1, 2, part) + _field(2, 2, scope_spans) + _field(1, 2, part)
    data = _field(1, 2, resource_spans)
    _assert_same(data)
    raw = decode_request_c(data)
    assert raw.resources == [part + part]
    assert raw.scopes == [_field(1, 2, b"lib") + _field(2, 2, b"v1")]


def test_known_field_with_other_wire_type_is_skipped() -> None:
    data = _span(
        _field(5, 0, _varint(7)), _field(1, 5, b"abcd"), _field(7, 2, b"12345678"), _field(5, 2, b"n")
    )
    _assert_same(data)
    assert decode_request_c(data).var["name"][1] == b"n"


def test_events_and_links_keep_their_wire_records() -> None:
    event = _field(2, 2, b"ev")
    link = _field(1, 2, b"\x01" * 16)
    records = [_field(11, 2, event), _field(13, 2, link), _field(5, 2, b"x"), _field(11, 2, b"")]
    raw = decode_request_c(_span(*records))
    assert raw.var["events"][1] == records[0] + records[3]
    assert raw.var["links"][1] == records[1]


# ------------------------------------------------------------------------------------------------
# malformed input


@pytest.mark.parametrize(
    ("data", "offset", "reason"),
    [
        (b"\x0a", 1, "truncated varint"),
        (b"\x0a\x05abc", 1, "runs past the end"),
        (b"\x80", 0, "truncated varint"),
        (b"\x08" + b"\xff" * 10 + b"\x01", 1, "longer than 10 bytes"),
        (b"\x0b", 0, "group"),
        (b"\x0e", 0, "invalid wire type 6"),
        (b"\x02\x00", 0, "field number 0"),
        (b"\x0a\x04\x12\x02\x12\x05", 5, "runs past the end"),
        (b"\x09\x01\x02", 1, "truncated fixed64"),
        (b"\x0d\x01\x02", 1, "truncated fixed32"),
        (b"\xf8\xff\xff\xff\xff\x01", 0, "tag out of range"),
    ],
)
def test_malformed_input_names_the_offset(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"^malformed OTLP protobuf at byte {offset}: .*{reason}"):
        decode_request_c(data)


def test_schema_url_must_be_utf8() -> None:
    data = _field(1, 2, _field(3, 2, b"\xff"))
    with pytest.raises(ValueError, match="malformed OTLP protobuf at byte 4"):
        decode_request_c(data)


def _first_resource_spans(req: ExportTraceServiceRequest) -> bytes:
    first = ExportTraceServiceRequest()
    first.resource_spans.extend(req.resource_spans[:1])
    return first.SerializeToString()


@settings(_HYPOTHESIS, max_examples=100)
@given(requests().map(_first_resource_spans), st.randoms(use_true_random=False))
def test_truncation_is_an_error(data: bytes, rng: random.Random) -> None:
    # one top-level record: any cut inside it leaves a length running past the end
    cuts = range(1, len(data))
    if len(cuts) > 300:
        cuts = [*cuts[:50], *cuts[-50:], *rng.sample(cuts, 200)]
    for cut in cuts:
        try:
            decode_request_c(data[:cut])
        except ValueError as exc:
            assert str(exc).startswith("malformed OTLP protobuf at byte "), exc
        else:
            pytest.fail(f"a cut at {cut} of {len(data)} bytes decoded without error")


@settings(_HYPOTHESIS, max_examples=150)
@given(request_bytes, st.randoms(use_true_random=False))
def test_corrupted_input_never_crashes(data: bytes, rng: random.Random) -> None:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if buf and rng.random() < 0.7:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        else:
            del buf[rng.randrange(len(buf) + 1) :]
    try:
        decode_request_c(bytes(buf))
    except ValueError as exc:
        assert "malformed OTLP protobuf" in str(exc)
        # never stricter than protobuf itself
        with pytest.raises(Exception):  # noqa: B017 - protobuf's DecodeError
            decode_request_py(bytes(buf))


def test_not_bytes_like() -> None:
    with pytest.raises(TypeError):
        decode_request_c("text")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# threads, selection, fallback


def test_concurrent_decodes_agree() -> None:
    req = ExportTraceServiceRequest()
    for r in range(5):
        ss = req.resource_spans.add().scope_spans.add()
        for s in range(200):
            span = ss.spans.add(trace_id=bytes([r]) * 16, span_id=s.to_bytes(8, "little"), name=f"op{s}")
            for a in range(10):
                span.attributes.add(key=f"k{a}").value.int_value = a * s
    data = req.SerializeToString()
    want = decode_request_py(data)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert decode_request_c(data) == want
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_decoder_prefers_c() -> None:
    assert decoder.DECODER_NAME == "c"
    data = ExportTraceServiceRequest(resource_spans=[{}]).SerializeToString()
    assert decoder.decode_request_raw(data) == decode_request_py(data)
    with pytest.raises(ValueError, match="malformed"):
        decoder.decode_request_raw(b"\x0a\x05")


def _decoder_in_subprocess(env_value: str | None, *, hide_extension: bool = False) -> str:
    env = dict(os.environ)
    env.pop("TRACELAKE_PURE_PYTHON", None)
    if env_value is not None:
        env["TRACELAKE_PURE_PYTHON"] = env_value
    code = (
        ("import sys; sys.modules['tracelake.codec._otlpdecode'] = None\n" if hide_extension else "")
        + "from tracelake.codec import decoder\n"
        "try:\n"
        "    decoder.decode_request_raw(b'\\x0a\\x05')\n"
        "except ValueError as exc:\n"
        "    assert 'malformed OTLP protobuf' in str(exc), exc\n"
        "print(decoder.DECODER_NAME)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_pure_python_env_var_forces_fallback() -> None:
    assert _decoder_in_subprocess("1") == "python"
    assert _decoder_in_subprocess("0") == "c"
    assert _decoder_in_subprocess(None) == "c"


def test_missing_extension_falls_back_to_python() -> None:
    assert _decoder_in_subprocess(None, hide_extension=True) == "python"


# ------------------------------------------------------------------------------------------------
# dedicated attributes: extracted by the decoders, identical to the former columnar extraction


def _reference_attributes(raw: RawSpans) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Frozen copy of assemble._attributes before the decoders extracted dedicated attributes.

    It must be fed a RawSpans decoded with ``dedicated=()`` (generic attributes only).
    """
    n, m = raw.n_spans, raw.n_attrs
    keys = assemble_mod._var(raw, "attr_key", pa.string(), m)
    types = raw.array("attr_type").copy()
    strs = assemble_mod._var(raw, "attr_str", pa.string(), m)
    assemble_mod._check_utf8(keys, strs)
    ints = raw.array("attr_int")
    offsets = raw.array("attr_offsets")
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    dedicated_keys = pa.array([key for key, _, _ in DEDICATED_SPAN_ATTRIBUTES])
    key_codes = pc.fill_null(pc.index_in(keys, value_set=dedicated_keys), -1).to_numpy()
    present = set(np.unique(key_codes[key_codes >= 0]).tolist()) if m else set()
    dedicated: dict[str, pa.Array] = {}
    taken = np.zeros(m, bool)
    for code, (_, column, attr_type) in enumerate(DEDICATED_SPAN_ATTRIBUTES):
        values_type = pa.string() if attr_type == AttrType.STRING else pa.int64()
        if code not in present:
            dedicated[column] = pa.nulls(n, values_type)
            continue
        hits = np.flatnonzero((key_codes == code) & (types == attr_type))
        spans = owner[hits]
        first = np.ones(len(hits), bool)
        first[1:] = spans[1:] != spans[:-1]
        hits, spans = hits[first], spans[first]
        taken[hits] = True
        types[hits] = AttrType.DEDICATED
        where = np.full(n, -1, np.int64)
        where[spans] = hits
        index = pa.array(where, mask=where < 0)
        source = strs if attr_type == AttrType.STRING else pa.array(ints)
        dedicated[column] = source.take(index)
    if taken.any():
        strs = pc.if_else(pa.array(taken), "", strs)
        ints = np.where(taken, 0, ints)
    items = pa.StructArray.from_arrays(
        [
            keys,
            pa.array(types),
            strs,
            pa.array(ints),
            assemble_mod._fixed(raw, "attr_double", pa.float64(), m),
            assemble_mod._var(raw, "attr_bytes", pa.binary(), m),
        ],
        fields=list(ATTRIBUTE_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(offsets), items), dedicated


_DECODERS = {"c": decode_request_c, "python": decode_request_py}


def _nan_safe(table: pa.Table) -> pa.Table:
    """The table with attribute doubles as their bits, so that NaN compares equal to itself."""
    attributes = table["attributes"].combine_chunks()
    items = attributes.values
    fields = [items.field(i) for i in range(items.type.num_fields)]
    fields[3 + 1] = fields[3 + 1].view(pa.int64())  # key, type, str, int, double, bytes
    names = [f.name for f in items.type]
    items = pa.StructArray.from_arrays(fields, names=names, mask=None)
    rebuilt = pa.ListArray.from_arrays(attributes.offsets, items)
    return table.set_column(table.schema.get_field_index("attributes"), "attributes", rebuilt)


def _assert_assembles_like_reference(data: bytes) -> None:
    for name, decode in _DECODERS.items():
        got = assemble_mod.assemble(decode(data))
        with mock.patch.object(assemble_mod, "_attributes", _reference_attributes):
            want = assemble_mod.assemble(decode(data, dedicated=()))
        assert got.table.schema == want.table.schema, name
        got.table, want.table = _nan_safe(got.table), _nan_safe(want.table)
        assert got.table.schema == want.table.schema, name
        for column in got.table.column_names:
            assert got.table[column].equals(want.table[column]), (name, column)
        assert got.table.equals(want.table), name
        assert got.rejected == want.rejected, name


@_HYPOTHESIS
@given(request_bytes)
def test_dedicated_extraction_matches_reference(data: bytes) -> None:
    _assert_same(data)
    _assert_assembles_like_reference(data)


def test_dedicated_extraction_matches_reference_on_synthetic_requests() -> None:
    synth = pytest.importorskip("tracelake.synth")
    for seed in range(3):
        cfg = synth.SynthConfig(traces=150, seed=seed, error_rate=0.3, start_unix_nano=1_700_000_000 * 10**9)
        for data in synth.generate_request_bytes(cfg):
            _assert_assembles_like_reference(data)


def test_dedicated_first_match_of_the_final_type_wins() -> None:
    text = _field(1, 2, b"text")

    def num(v: int) -> bytes:
        return _field(3, 0, _varint(v))

    data = _span(
        _attr(text, key=b"http.status_code"),  # wrong type: stays generic
        _attr(text + num(404), key=b"http.status_code"),  # last member wins: an INT, dedicated
        _attr(num(500), key=b"http.status_code"),  # a second one: stays generic
        _attr(num(1) + _field(1, 2, b"GET"), key=b"http.method"),  # ends a STRING: dedicated
        _attr(_field(1, 2, b"POST"), num(7), key=b"http.route"),  # merged value ends an INT: generic
        _attr(_field(1, 2, b"x"), key=b"http.metho"),  # a prefix of a dedicated key: generic
    )
    _assert_same(data)
    _assert_assembles_like_reference(data)
    raw = decode_request_c(data)
    assert list(raw.array("attr_type")) == [1, 8, 3, 8, 3, 1]
    assert list(raw.array("attr_int")) == [0, 0, 500, 0, 7, 0]
    assert raw.var["attr_str"] == (np.array([0, 4, 4, 4, 4, 4, 5], "<i4").tobytes(), b"textx")
    attributes, dedicated = assemble_mod._attributes(raw)  # the span has no ids: assemble drops it
    assert dedicated["http_status_code"].to_pylist() == [404]
    assert dedicated["http_method"].to_pylist() == ["GET"] and dedicated["http_route"].to_pylist() == [None]
    keys = [a["key"] for a in attributes.to_pylist()[0]]
    assert keys == ["http.status_code"] * 3 + ["http.method", "http.route", "http.metho"]


def test_dedicated_columns_are_per_span() -> None:
    method = _attr(_field(1, 2, b"GET"), key=b"http.method")
    spans = [_field(2, 2, _field(9, 2, b"") + method), _field(2, 2, b""), _field(2, 2, method + method)]
    data = _field(1, 2, _field(2, 2, b"".join(spans)))
    _assert_same(data)
    _assert_assembles_like_reference(data)
    raw = decode_request_c(data)
    validity, offsets, values = raw.dedicated["http_method"]
    assert validity == bytes([0b101]) and values == b"GETGET"
    assert list(np.frombuffer(offsets, "<i4")) == [0, 3, 3, 6]
    assert list(raw.array("attr_type")) == [0, 8, 8, 1]


def test_dedicated_string_must_be_utf8() -> None:
    data = _span(_attr(_field(1, 2, b"\xff"), key=b"http.method"))
    raw = decode_request_c(data)
    assert raw.dedicated["http_method"][2] == b"\xff"
    with pytest.raises(InvalidInputError, match="UTF-8"):
        assemble_mod.assemble(raw)


def test_dedicated_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="STRING or INT"):
        cdecode._otlpdecode.decode(b"", ((b"k", 2),))
    with pytest.raises(ValueError, match="at most"):
        cdecode._otlpdecode.decode(b"", tuple((b"k%d" % i, 1) for i in range(33)))
    with pytest.raises(TypeError):
        cdecode._otlpdecode.decode(b"", (("k", 1),))
