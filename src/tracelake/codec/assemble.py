"""Raw decoder columns -> the validated span table, with columnar operations only.

Nothing here loops per span or per attribute in Python: ids are checked by their offset arrays, dedicated
attributes come out of the decoder already extracted, and resources/scopes are decoded once per
distinct value (a few per request), never per span.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tracelake.codec.raw import RawSpans
from tracelake.errors import InvalidInputError
from tracelake.model.schema import (
    ATTRIBUTE_TYPE,
    DEDICATED_RESOURCE_ATTRIBUTES,
    DEDICATED_SPAN_ATTRIBUTES,
    SPAN_ID_BYTES,
    SPAN_SCHEMA,
    TRACE_ID_BYTES,
    AttrType,
)

# Why a span was refused; the keys are the `reason` label of the discard metric.
REASON_BAD_TRACE_ID = "invalid_trace_id"
REASON_BAD_SPAN_ID = "invalid_span_id"
REASON_BAD_PARENT_ID = "invalid_parent_span_id"


@dataclass
class DecodedSpans:
    table: pa.Table
    rejected: Counter[str] = field(default_factory=Counter)


def _var(raw: RawSpans, name: str, type_: pa.DataType, length: int) -> pa.Array:
    offsets, data = raw.var[name]
    return pa.Array.from_buffers(type_, length, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _fixed(raw: RawSpans, name: str, type_: pa.DataType, length: int) -> pa.Array:
    return pa.Array.from_buffers(type_, length, [None, pa.py_buffer(raw.fixed[name])])


def _lengths(raw: RawSpans, name: str) -> np.ndarray:
    return np.diff(raw.offsets(name))


def _bad_ids(raw: RawSpans, name: str, width: int, empty_ok: bool, zero_ok: bool) -> np.ndarray:
    """Spans whose id in column ``name`` is not ``width`` bytes (or empty, where allowed) or all zero."""
    offsets = raw.offsets(name)
    lengths = offsets[1:] - offsets[:-1]
    right = lengths == width
    bad = ~right & (lengths != 0) if empty_ok else ~right
    if not zero_ok:
        data = np.frombuffer(raw.var[name][1], dtype=np.uint8)
        if right.all():  # the common case: ids packed back to back; test them as 64-bit words
            words = data.view("<u8")
            bad |= (words[0::2] | words[1::2]) == 0 if width == 16 else words == 0
        else:
            starts = offsets[:-1][right]
            ids = data[starts[:, None] + np.arange(width)]
            bad[right] |= ~ids.any(axis=1)
    return bad


def _valid_ids(raw: RawSpans, rejected: Counter[str]) -> np.ndarray | None:
    """Mask of spans with well-formed ids, or None when all are (the common case: no copy)."""
    bad_trace = _bad_ids(raw, "trace_id", TRACE_ID_BYTES, empty_ok=False, zero_ok=False)
    bad_span = _bad_ids(raw, "span_id", SPAN_ID_BYTES, empty_ok=False, zero_ok=False) & ~bad_trace
    bad_parent = _bad_ids(raw, "parent_span_id", SPAN_ID_BYTES, empty_ok=True, zero_ok=True)
    bad_parent &= ~(bad_trace | bad_span)
    if not (bad_trace.any() or bad_span.any() or bad_parent.any()):
        return None
    for reason, bad in (
        (REASON_BAD_TRACE_ID, bad_trace),
        (REASON_BAD_SPAN_ID, bad_span),
        (REASON_BAD_PARENT_ID, bad_parent),
    ):
        if count := int(bad.sum()):
            rejected[reason] += count
    return ~(bad_trace | bad_span | bad_parent)


_DEDICATED_TYPES = {
    column: pa.string() if attr_type == AttrType.STRING else pa.int64()
    for _, column, attr_type in DEDICATED_SPAN_ATTRIBUTES
}


def _attributes(raw: RawSpans) -> tuple[pa.Array, dict[str, pa.Array]]:
    """The attribute list column, and the dedicated columns the decoder already took out of it.

    Everything is wrapped zero-copy: the decoder left placeholders (type DEDICATED, empty value) in the
    list and one Arrow-ready buffer set per dedicated column, so nothing is searched or copied here.
    """
    n, m = raw.n_spans, raw.n_attrs
    keys = _var(raw, "attr_key", pa.string(), m)
    strs = _var(raw, "attr_str", pa.string(), m)
    dedicated = {
        column: pa.Array.from_buffers(type_, n, [pa.py_buffer(b) for b in raw.dedicated[column]])
        for column, type_ in _DEDICATED_TYPES.items()
    }
    _check_utf8(keys, strs, *(a for a in dedicated.values() if a.type == pa.string()))
    items = pa.StructArray.from_arrays(
        [
            keys,
            _fixed(raw, "attr_type", pa.uint8(), m),
            strs,
            _fixed(raw, "attr_int", pa.int64(), m),
            _fixed(raw, "attr_double", pa.float64(), m),
            _var(raw, "attr_bytes", pa.binary(), m),
        ],
        fields=list(ATTRIBUTE_TYPE),
    )
    offsets = _fixed(raw, "attr_offsets", pa.int32(), n + 1)
    return pa.ListArray.from_arrays(offsets, items), dedicated


def _check_utf8(*arrays: pa.Array) -> None:
    """The C decoder copies string bytes as they came: Arrow checks them here, in bulk."""
    try:
        for array in arrays:
            array.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise InvalidInputError(f"invalid UTF-8 in a string field: {exc}") from exc


def _ids(raw: RawSpans, name: str, width: int, n: int, all_valid: bool) -> pa.Array:
    """Ids as fixed-size binary: zero-copy when every span's id has the right width."""
    if all_valid:
        return pa.Array.from_buffers(pa.binary(width), n, [None, pa.py_buffer(raw.var[name][1])])
    return _var(raw, name, pa.binary(), n)


def _per_message_column(index: pa.Array, values: list, type_: pa.DataType) -> pa.DictionaryArray:
    """A per-span column whose value is the same for every span of a ResourceSpans/ScopeSpans.

    A missing value is a null index, never a null in the dictionary (Parquet cannot write those).
    """
    if any(v is None for v in values):
        missing = pa.array([v is None for v in values])
        index = pc.if_else(pc.take(missing, index), pa.scalar(None, pa.int32()), index)
        empty = b"" if pa.types.is_binary(type_) else ""
        values = [empty if v is None else v for v in values]
    return pa.DictionaryArray.from_arrays(index, pa.array(values, type_))


def _resource_values(resources: list[bytes]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {col: [] for _, col in DEDICATED_RESOURCE_ATTRIBUTES}
    wanted = dict(DEDICATED_RESOURCE_ATTRIBUTES)
    for blob in resources:
        found: dict[str, str] = {}
        for kv in Resource.FromString(blob).attributes:
            column = wanted.get(kv.key)
            if column and column not in found and kv.value.WhichOneof("value") == "string_value":
                found[column] = kv.value.string_value
        for _, column in DEDICATED_RESOURCE_ATTRIBUTES:
            out[column].append(found.get(column))
    return out


def assemble(raw: RawSpans) -> DecodedSpans:
    """Build the span table (SPAN_SCHEMA) from raw columns; spans with malformed ids are dropped."""
    n = raw.n_spans
    rejected: Counter[str] = Counter()
    keep = _valid_ids(raw, rejected) if n else None
    attributes, dedicated = _attributes(raw)
    resource_index = _fixed(raw, "resource_index", pa.int32(), n)
    scope_index = _fixed(raw, "scope_index", pa.int32(), n)
    try:
        scopes = [InstrumentationScope.FromString(b) for b in raw.scopes]
        resource_values = _resource_values(raw.resources)
    except Exception as exc:  # protobuf's DecodeError, or invalid UTF-8 in a string
        raise InvalidInputError(f"undecodable resource or scope: {exc}") from exc
    columns: dict[str, pa.Array] = {
        "trace_id": _ids(raw, "trace_id", TRACE_ID_BYTES, n, keep is None),
        "span_id": _ids(raw, "span_id", SPAN_ID_BYTES, n, keep is None),
        "parent_span_id": _var(raw, "parent_span_id", pa.binary(), n),
        "trace_state": _var(raw, "trace_state", pa.string(), n),
        "flags": _fixed(raw, "flags", pa.uint32(), n),
        "name": _var(raw, "name", pa.string(), n),
        "kind": _fixed(raw, "kind", pa.int32(), n),
        "start_time_unix_nano": _fixed(raw, "start_time_unix_nano", pa.uint64(), n),
        "end_time_unix_nano": _fixed(raw, "end_time_unix_nano", pa.uint64(), n),
        "status_code": _fixed(raw, "status_code", pa.int32(), n),
        "status_message": _var(raw, "status_message", pa.string(), n),
        "dropped_attributes_count": _fixed(raw, "dropped_attributes_count", pa.uint32(), n),
        "dropped_events_count": _fixed(raw, "dropped_events_count", pa.uint32(), n),
        "dropped_links_count": _fixed(raw, "dropped_links_count", pa.uint32(), n),
        "attributes": attributes,
        "events": _var(raw, "events", pa.binary(), n),
        "links": _var(raw, "links", pa.binary(), n),
        "resource": _per_message_column(resource_index, raw.resources, pa.binary()),
        "resource_schema_url": _per_message_column(resource_index, raw.resource_schema_urls, pa.string()),
        "scope": _per_message_column(scope_index, raw.scopes, pa.binary()),
        "scope_schema_url": _per_message_column(scope_index, raw.scope_schema_urls, pa.string()),
        "scope_name": _per_message_column(scope_index, [s.name for s in scopes], pa.string()),
        "scope_version": _per_message_column(scope_index, [s.version for s in scopes], pa.string()),
    }
    for column, values in resource_values.items():
        columns[column] = _per_message_column(resource_index, values, pa.string())
    columns.update(dedicated)
    _check_utf8(columns["trace_state"], columns["name"], columns["status_message"])
    if keep is None:
        return DecodedSpans(
            table=pa.Table.from_arrays([columns[f.name] for f in SPAN_SCHEMA], schema=SPAN_SCHEMA)
        )
    mask = pa.array(keep)
    for name in ("trace_id", "span_id"):
        columns[name] = columns[name].filter(mask).cast(SPAN_SCHEMA.field(name).type)
    arrays = [
        columns[f.name] if f.name in ("trace_id", "span_id") else columns[f.name].filter(mask)
        for f in SPAN_SCHEMA
    ]
    return DecodedSpans(table=pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA), rejected=rejected)
