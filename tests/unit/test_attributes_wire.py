"""Packed attributes (format tl2): the compiled and the pure-Python codec write the same bytes and
read back the typed list the decoder built, dedicated placeholders and all."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings

from tests.bitwise import bits
from tests.strategies import export_requests
from tracelake.codec import attributes_wire as wire
from tracelake.codec.decode import decode_otlp
from tracelake.synth import SynthConfig, generate_request_bytes

needs_c = pytest.mark.skipif(wire._C is None, reason="the compiled _attrwire is not built")


def _same(a: pa.Array, b: pa.Array) -> bool:
    return a.type == b.type and bits(a.to_pylist()) == bits(b.to_pylist())


def _dedicated(spans: pa.Table) -> dict[str, pa.Array]:
    return {column: spans[column].combine_chunks() for _, column, _ in wire._DEDICATED}


@settings(max_examples=150, deadline=None)
@given(request=export_requests())
def test_pack_then_unpack_gives_the_decoded_attributes(request) -> None:
    spans = decode_otlp(request.SerializeToString()).table
    attributes = spans["attributes"].combine_chunks()
    packed = wire.pack_attributes(attributes, spans)
    assert _same(wire.unpack_attributes(packed), attributes)
    assert _same(wire._unpack_python(packed), attributes)
    columns = {c: wire._zero_offset(a.cast(pa.string() if t == 1 else pa.int64())) for (_, c, t), a in
               zip(wire._DEDICATED, _dedicated(spans).values(), strict=True)}  # fmt: skip
    assert wire._pack_python(attributes, columns).equals(packed)


def test_sliced_columns_pack_like_their_copies() -> None:
    payload = next(generate_request_bytes(SynthConfig(traces=5, seed=1)))
    spans = decode_otlp(payload).table.combine_chunks()
    part = spans.slice(3, spans.num_rows - 5)
    copy = pa.table({name: pa.concat_arrays([part[name].chunk(0).take(pa.array(range(part.num_rows)))])
                     for name in part.column_names})  # fmt: skip
    assert part["attributes"].chunk(0).offset == 3 and copy["attributes"].chunk(0).offset == 0
    assert wire.pack_attributes(part["attributes"], part).equals(
        wire.pack_attributes(copy["attributes"], copy)
    )


@needs_c
@pytest.mark.parametrize(
    "blob",
    [b"\x4a\x05\x0a\x01", b"\x4a\x03\x12\x01\x0a", b"\x4a\x02\x12\x05", b"\x4a\x80", b"\x00"],
    ids=["short-record", "short-value", "value-past-record", "unfinished-varint", "field-zero"],
)
def test_malformed_bytes_are_refused_with_the_row(blob: bytes) -> None:
    packed = pa.array([b"", blob], pa.binary())
    with pytest.raises(ValueError, match="malformed packed attributes in row 1"):
        wire.unpack_attributes(packed)


def test_typed_lists_pass_through_unpack() -> None:
    """A tl1 block's column is the typed list already: returned as it is."""
    lists = pa.array(
        [[dict(key="k", type=1, str="v", int=0, double=0.0, bytes=b"")], []], wire.ATTRIBUTES_LIST
    )
    assert wire.unpack_attributes(lists) is lists


@needs_c
@pytest.mark.parametrize("key", ["http.method", "http.status_code", "thread.name", "thread.id", "missing"])
def test_key_entries_match_the_unpacked_list(key: str) -> None:
    """A search's scan of one key gives what filtering the unpacked list gives, C and Python alike
    (a dedicated key's first entry of its type is the placeholder, left out)."""
    payload = next(generate_request_bytes(SynthConfig(traces=20, seed=2)))
    spans = decode_otlp(payload).table
    lists = spans["attributes"].combine_chunks()
    packed = wire.pack_attributes(lists, spans)
    flat = lists.flatten().to_pylist()
    parents = pa.compute.list_parent_indices(lists).to_pylist()
    want = [
        (parents[i], item["type"], item["str"], item["int"], item["double"])
        for i, item in enumerate(flat)
        if item["key"] == key and item["type"] != 8
    ]
    for found in (wire.key_entries(packed, key), wire._key_entries_python(packed, key)):
        rows, types, strs, ints, doubles = found
        got = list(
            zip(rows.tolist(), types.tolist(), strs.to_pylist(), ints.tolist(), doubles.tolist(), strict=True)
        )
        assert got == want
    placeholders = sum(item["key"] == key and item["type"] == 8 for item in flat)
    assert (len(want), placeholders > 0) == {
        "http.method": (0, True),  # dedicated: in their columns
        "http.status_code": (0, True),
        "thread.name": (132, False),
        "thread.id": (132, False),
        "missing": (0, False),
    }[key]
