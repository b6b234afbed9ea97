"""Span attributes <-> OTLP wire records: how blocks store the ``attributes`` column (format tl2).

In memory a span's attributes are a typed list (``ATTRIBUTE_TYPE``: search and tag values filter it
columnar). In a block they are one binary value per span: the bytes of ``Span.attributes`` (repeated
field 9), dedicated values included, so ``Span.FromString(value).attributes`` reads them anywhere.
One value per span is what makes compaction cheap: merging moves it with one copy, where the typed
list costs an offsets rebuild in six child columns (benchmarks in docs/block-format.md).

The compiled ``_attrwire`` does both directions; without it (or with ``TRACELAKE_PURE_PYTHON=1``)
the protobuf runtime does, per span.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.codec.native import pure_python_forced
from tracelake.model.schema import ATTRIBUTE_TYPE, DEDICATED_SPAN_ATTRIBUTES, AttrType

ATTRIBUTES_LIST = pa.list_(pa.field("item", ATTRIBUTE_TYPE, nullable=False))
_DEDICATED = tuple(
    (key.encode(), column, int(attr_type)) for key, column, attr_type in DEDICATED_SPAN_ATTRIBUTES
)
_UNPACK_SPEC = tuple((key, attr_type) for key, _, attr_type in _DEDICATED)


def _compiled():
    if pure_python_forced():
        return None
    try:
        from tracelake.codec import _attrwire
    except ImportError:
        return None
    return _attrwire


_C = _compiled()


def _one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _zero_offset(array: pa.Array) -> pa.Array:
    """The array with its own buffers starting at row 0 (validity bitmaps are passed to C by byte)."""
    return pa.concat_arrays([array]) if array.offset else array


def _var(array: pa.Array) -> tuple[np.ndarray, pa.Buffer | bytes]:
    """(int32 offsets of the array's rows, value data) of a string or binary array."""
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int32)[array.offset : array.offset + len(array) + 1]
    return offsets, buffers[2] if buffers[2] is not None else b""


def _fixed(array: pa.Array, dtype: str) -> np.ndarray:
    return np.frombuffer(array.buffers()[1], dtype)[array.offset : array.offset + len(array)]


# ---- pack: typed list -> wire bytes ---------------------------------------------------------------


def pack_attributes(
    attributes: pa.Array | pa.ChunkedArray, dedicated: pa.Table | Mapping[str, pa.Array | pa.ChunkedArray]
) -> pa.Array:
    """The ``attributes`` column (``ATTRIBUTES_LIST``) as wire bytes, one binary value per row.

    ``dedicated`` holds the rows' dedicated span attribute columns (``DEDICATED_SPAN_ATTRIBUTES``):
    a ``DEDICATED`` placeholder is written with the value of its row in that column.
    """
    lists = _one_chunk(attributes)
    columns = {}
    for _, column, attr_type in _DEDICATED:
        plain = pa.string() if attr_type == AttrType.STRING else pa.int64()
        columns[column] = _zero_offset(_one_chunk(dedicated[column]).cast(plain))
    if _C is None:
        return _pack_python(lists, columns)
    items = lists.values
    fields = {name: items.field(name) for name in ("key", "type", "str", "int", "double", "bytes")}
    list_offsets = np.frombuffer(lists.buffers()[1], np.int32)[lists.offset : lists.offset + len(lists) + 1]
    spec = []
    for key, column, attr_type in _DEDICATED:
        values = columns[column]
        validity = values.buffers()[0]
        if attr_type == AttrType.STRING:
            offsets, data = _var(values)
            spec.append((key, attr_type, validity or b"", offsets, data))
        else:
            spec.append((key, attr_type, validity or b"", _fixed(values, "i8"), b""))
    offsets, data = _C.pack(
        len(lists),
        list_offsets,
        *_var(fields["key"]),
        _fixed(fields["type"], "u1"),
        *_var(fields["str"]),
        _fixed(fields["int"], "i8"),
        _fixed(fields["double"], "f8"),
        *_var(fields["bytes"]),
        spec,
    )
    return pa.Array.from_buffers(pa.binary(), len(lists), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def set_any_value(value: AnyValue, attr_type: int, item: dict) -> None:
    """Fill an OTLP ``AnyValue`` from a typed attribute entry (``item``: its str/int/double/bytes)."""
    if attr_type == AttrType.STRING:
        value.string_value = item["str"]
    elif attr_type == AttrType.BOOL:
        value.bool_value = bool(item["int"])
    elif attr_type == AttrType.INT:
        value.int_value = item["int"]
    elif attr_type == AttrType.DOUBLE:
        value.double_value = item["double"]
    elif attr_type == AttrType.BYTES:
        value.bytes_value = item["bytes"]
    elif attr_type == AttrType.ARRAY:
        value.array_value.MergeFromString(item["bytes"])
    elif attr_type == AttrType.KVLIST:
        value.kvlist_value.MergeFromString(item["bytes"])
    elif attr_type != AttrType.EMPTY:
        raise ValueError(f"unknown attribute type {attr_type}")


def _pack_python(lists: pa.Array, columns: dict[str, pa.Array]) -> pa.Array:
    by_key = {key.decode(): (column, attr_type) for key, column, attr_type in _DEDICATED}
    dedicated = {column: values.to_pylist() for column, values in columns.items()}
    out = []
    for row, items in enumerate(lists.to_pylist()):
        span = Span()
        for item in items or ():
            kv = span.attributes.add(key=item["key"])
            attr_type = item["type"]
            if attr_type == AttrType.DEDICATED:
                column, attr_type = by_key.get(item["key"], (None, AttrType.EMPTY))
                value = None if column is None else dedicated[column][row]
                if value is None:
                    continue
                item = {"str": value, "int": value}
            set_any_value(kv.value, attr_type, item)
        out.append(span.SerializeToString())
    return pa.array(out, pa.binary())


# ---- unpack: wire bytes -> typed list -------------------------------------------------------------


def unpack_attributes(packed: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Wire bytes (``pack_attributes``) -> the typed list, DEDICATED placeholders as the decoder leaves
    them (a span's first attribute with a dedicated key and type). A typed list is returned as it is
    (blocks of format tl1 store it so)."""
    if isinstance(packed, pa.ChunkedArray):
        return pa.chunked_array([unpack_attributes(c) for c in packed.chunks], ATTRIBUTES_LIST)
    if not (pa.types.is_binary(packed.type) or pa.types.is_large_binary(packed.type)):
        return packed
    packed = packed.cast(pa.binary()) if pa.types.is_large_binary(packed.type) else packed
    if _C is None:
        return _unpack_python(packed)
    offsets, data = _var(packed)
    n = len(packed)
    out = _C.unpack(n, offsets, data, _UNPACK_SPEC)
    buf = [pa.py_buffer(b) for b in out]
    list_offsets, key_off, key, types, str_off, str_, ints, doubles, bytes_off, bytes_ = buf
    m = len(types)
    items = pa.StructArray.from_arrays(
        [
            pa.Array.from_buffers(pa.string(), m, [None, key_off, key]),
            pa.Array.from_buffers(pa.uint8(), m, [None, types]),
            pa.Array.from_buffers(pa.string(), m, [None, str_off, str_]),
            pa.Array.from_buffers(pa.int64(), m, [None, ints]),
            pa.Array.from_buffers(pa.float64(), m, [None, doubles]),
            pa.Array.from_buffers(pa.binary(), m, [None, bytes_off, bytes_]),
        ],
        fields=list(ATTRIBUTE_TYPE),
    )
    return pa.ListArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), n + 1, [None, list_offsets]), items
    ).cast(ATTRIBUTES_LIST)


def key_entries(
    packed: pa.Array, key: str
) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray, np.ndarray]:
    """The attributes named ``key`` in wire bytes, without building the rest: (row, AttrType, str,
    int, double) per entry, a span's dedicated placeholder left out (its value is in the dedicated
    column). What a search condition on one attribute reads (``python benchmarks/query_bench.py``,
    ``{ span.net.peer.port > 5000 }`` on one block: 128 ms unpacking every attribute, 32 ms so)."""
    dedicated = next((t for k, _, t in _DEDICATED if k == key.encode()), -1)
    if _C is None:
        return _key_entries_python(packed, key)
    offsets, data = _var(packed)
    rows, types, str_off, strs, ints, doubles = _C.find_key(
        len(packed), offsets, data, key.encode(), dedicated
    )
    m = len(types)
    return (
        np.frombuffer(rows, np.int64),
        np.frombuffer(types, np.uint8),
        pa.Array.from_buffers(pa.string(), m, [None, pa.py_buffer(str_off), pa.py_buffer(strs)]),
        np.frombuffer(ints, np.int64),
        np.frombuffer(doubles, np.float64),
    )


def _key_entries_python(packed: pa.Array, key: str):
    lists = _unpack_python(packed)
    flat = lists.flatten().to_pylist()
    parents = pc.list_parent_indices(lists).to_numpy()
    picked = [i for i, item in enumerate(flat) if item["key"] == key and item["type"] != AttrType.DEDICATED]
    return (
        parents[picked].astype(np.int64),
        np.array([flat[i]["type"] for i in picked], np.uint8),
        pa.array([flat[i]["str"] for i in picked], pa.string()),
        np.array([flat[i]["int"] for i in picked], np.int64),
        np.array([flat[i]["double"] for i in picked], np.float64),
    )


_VALUE_FIELDS = {
    "string_value": AttrType.STRING,
    "bool_value": AttrType.BOOL,
    "int_value": AttrType.INT,
    "double_value": AttrType.DOUBLE,
    "bytes_value": AttrType.BYTES,
    "array_value": AttrType.ARRAY,
    "kvlist_value": AttrType.KVLIST,
}


def _unpack_python(packed: pa.Array) -> pa.Array:
    dedicated = {key.decode(): attr_type for key, _, attr_type in _DEDICATED}
    rows = []
    for blob in packed.to_pylist():
        items, filled = [], set()
        for kv in Span.FromString(blob or b"").attributes:
            which = kv.value.WhichOneof("value") if kv.HasField("value") else None
            attr_type = _VALUE_FIELDS.get(which, AttrType.EMPTY)
            item = dict(key=kv.key, type=int(attr_type), str="", int=0, double=0.0, bytes=b"")
            if dedicated.get(kv.key) == attr_type and kv.key not in filled:
                filled.add(kv.key)
                item["type"] = int(AttrType.DEDICATED)
            elif attr_type == AttrType.STRING:
                item["str"] = kv.value.string_value
            elif attr_type in (AttrType.BOOL, AttrType.INT):
                item["int"] = int(kv.value.bool_value if attr_type == AttrType.BOOL else kv.value.int_value)
            elif attr_type == AttrType.DOUBLE:
                item["double"] = kv.value.double_value
            elif attr_type == AttrType.BYTES:
                item["bytes"] = kv.value.bytes_value
            elif attr_type in (AttrType.ARRAY, AttrType.KVLIST):
                item["bytes"] = getattr(kv.value, which).SerializeToString()
            items.append(item)
        rows.append(items)
    return pa.array(rows, ATTRIBUTES_LIST)
