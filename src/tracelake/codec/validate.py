"""Decode and validate one request's spans: the distributor's checks, as a pure function.

Pure so that WAL replay repeats the same decisions: every check is relative to the request's receive
time, not the clock at replay. Columnar throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.codec.assemble import DecodedSpans
from tracelake.codec.decode import decode_otlp
from tracelake.model.schema import DEDICATED_RESOURCE_ATTRIBUTES, DEDICATED_SPAN_ATTRIBUTES, AttrType
from tracelake.otlp.wire import len_field

REASON_TIME_RANGE = "timestamp_out_of_range"
REASON_BAD_ATTRIBUTE = "invalid_attribute"  # a nested value too deep for protobuf to read back


@dataclass(frozen=True)
class SpanRules:
    max_span_age_ns: int  # 0 = no limit
    max_span_future_ns: int  # 0 = no limit
    max_attribute_bytes: int  # 0 = no limit


@dataclass
class PreparedSpans(DecodedSpans):
    truncated_attributes: int = 0


def prepare_spans(payload: bytes, received_unix_nano: int, rules: SpanRules) -> PreparedSpans:
    """Decode ``payload`` and drop or fix what the rules refuse; raises InvalidInputError if undecodable."""
    decoded = decode_otlp(payload)
    table, rejected = decoded.table, decoded.rejected
    table, out_of_range = _filter_time_range(table, received_unix_nano, rules)
    if out_of_range:
        rejected[REASON_TIME_RANGE] += out_of_range
    if table.num_rows:
        unparseable = _unparseable_spans(table)
        if unparseable.any():
            rejected[REASON_BAD_ATTRIBUTE] += int(unparseable.sum())
            table = table.filter(pa.array(~unparseable))
    truncated = 0
    if rules.max_attribute_bytes > 0 and table.num_rows:
        table, truncated = _truncate_strings(table, rules.max_attribute_bytes)
    return PreparedSpans(table=table, rejected=rejected, truncated_attributes=truncated)


def _filter_time_range(table: pa.Table, now: int, rules: SpanRules) -> tuple[pa.Table, int]:
    if not table.num_rows or not (rules.max_span_age_ns or rules.max_span_future_ns):
        return table, 0
    start = table["start_time_unix_nano"].to_numpy()
    end = table["end_time_unix_nano"].to_numpy()
    ok = np.ones(len(start), bool)
    if rules.max_span_age_ns:
        ok &= start >= max(now - rules.max_span_age_ns, 0)
    if rules.max_span_future_ns:
        ok &= end <= now + rules.max_span_future_ns
    bad = int(len(ok) - ok.sum())
    return (table.filter(pa.array(ok)), bad) if bad else (table, 0)


_STRING_COLUMNS = [col for _, col, t in DEDICATED_SPAN_ATTRIBUTES if t == AttrType.STRING]
_RESOURCE_COLUMNS = [col for _, col in DEDICATED_RESOURCE_ATTRIBUTES]
# Below this many bytes, a nested value cannot be deep enough to trip protobuf's recursion limit (100).
_NESTING_CHECK_BYTES = 150


def _cut_utf8(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, never ending inside a character."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def _cut(values: pa.Array | pa.ChunkedArray, limit: int) -> tuple[pa.Array | pa.ChunkedArray, int]:
    """Values longer than ``limit`` bytes cut to ``limit`` bytes (only the long ones touch Python)."""
    if _none_longer(values, limit):
        return values, 0
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.DictionaryArray):  # cut the few distinct values, keep the indices
        dictionary, count = _cut(values.dictionary, limit)
        if not count:
            return values, 0
        return pa.DictionaryArray.from_arrays(values.indices, dictionary), int(
            pc.sum(
                pc.is_in(values.indices, pa.array(np.flatnonzero(_long(values.dictionary, limit))))
            ).as_py()
            or 0
        )
    too_long = _long(values, limit)
    count = int(too_long.sum())
    if not count:
        return values, 0
    cut = pa.array([_cut_utf8(v, limit) for v in values.filter(pa.array(too_long)).to_pylist()], values.type)
    return pc.replace_with_mask(values, pa.array(too_long), cut), count


def _long(values: pa.Array, limit: int) -> np.ndarray:
    return pc.fill_null(pc.greater(pc.binary_length(values), limit), False).to_numpy(zero_copy_only=False)


def _none_longer(values: pa.Array | pa.ChunkedArray, limit: int) -> bool:
    """No value is longer than ``limit`` bytes. The array's size (one C call) bounds every value,
    which settles most columns of a small request without the offsets (`python
    benchmarks/push_bench.py --fsync never`, one 10-span trace per request: 523-534 -> 443-446 µs)."""
    return values.nbytes <= limit or _max_len(values) <= limit


def _max_len(values: pa.Array | pa.ChunkedArray) -> int:
    """The longest value of a string/binary array, from its offsets alone (no kernel, no copy)."""
    if isinstance(values, pa.ChunkedArray):
        return max((_max_len(chunk) for chunk in values.chunks), default=0)
    if isinstance(values, pa.DictionaryArray):
        return _max_len(values.dictionary)
    if len(values) == 0:
        return 0
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    return int(np.diff(offsets).max())


def _cut_any_value(value: AnyValue, limit: int) -> int:
    kind = value.WhichOneof("value")
    if kind == "string_value" and len(value.string_value.encode()) > limit:
        value.string_value = _cut_utf8(value.string_value, limit)
        return 1
    if kind == "array_value":
        return sum(_cut_any_value(v, limit) for v in value.array_value.values)
    if kind == "kvlist_value":
        return sum(_cut_any_value(kv.value, limit) for kv in value.kvlist_value.values)
    return 0


def _cut_attributes(attributes, limit: int) -> int:
    return sum(_cut_any_value(kv.value, limit) for kv in attributes)


def _cut_messages(column: pa.Array, message_type, limit: int) -> tuple[pa.Array, int]:
    """Truncate strings inside serialized Resource/InstrumentationScope dictionary entries."""
    if _none_longer(column.dictionary, limit):
        return column, 0
    dictionary = column.dictionary.to_pylist()
    total = 0
    for i, blob in enumerate(dictionary):
        if len(blob) > limit:
            message = message_type.FromString(blob)
            count = _cut_attributes(message.attributes, limit)
            if isinstance(message, InstrumentationScope):
                for name in ("name", "version"):
                    if len(getattr(message, name).encode()) > limit:
                        setattr(message, name, _cut_utf8(getattr(message, name), limit))
                        count += 1
            if count:
                dictionary[i] = message.SerializeToString(deterministic=True)
                total += count
    if not total:
        return column, 0
    return pa.DictionaryArray.from_arrays(column.indices, pa.array(dictionary, pa.binary())), total


def _cut_events_and_links(table: pa.Table, limit: int) -> tuple[pa.Table, int]:
    events, links = table["events"].combine_chunks(), table["links"].combine_chunks()
    if _none_longer(events, limit) and _none_longer(links, limit):
        return table, 0
    long_rows = np.flatnonzero(_long(events, limit) | _long(links, limit))
    if not len(long_rows):
        return table, 0
    new_events, new_links = events.to_pylist(), links.to_pylist()
    total = 0
    for row in long_rows.tolist():
        span = Span.FromString(new_events[row] + new_links[row])
        count = sum(_cut_attributes(e.attributes, limit) for e in span.events)
        count += sum(_cut_attributes(link.attributes, limit) for link in span.links)
        if count:
            new_events[row] = b"".join(
                len_field(11, e.SerializeToString(deterministic=True)) for e in span.events
            )
            new_links[row] = b"".join(
                len_field(13, x.SerializeToString(deterministic=True)) for x in span.links
            )
            total += count
    if total:
        table = table.set_column(
            table.schema.get_field_index("events"), "events", pa.array(new_events, pa.binary())
        )
        table = table.set_column(
            table.schema.get_field_index("links"), "links", pa.array(new_links, pa.binary())
        )
    return table, total


def _truncate_strings(table: pa.Table, limit: int) -> tuple[pa.Table, int]:
    total = 0
    for column in _STRING_COLUMNS:
        values, count = _cut(table[column], limit)
        if count:
            table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), values)
            total += count
    attributes = table["attributes"].combine_chunks()
    items = attributes.values
    strs, count = _cut(items.field("str"), limit)
    if count:
        fields = [items.field(i) if f.name != "str" else strs for i, f in enumerate(items.type)]
        field = table.schema.field("attributes")
        rebuilt = pa.ListArray.from_arrays(
            attributes.offsets, pa.StructArray.from_arrays(fields, fields=list(items.type)), type=field.type
        )
        table = table.set_column(table.schema.get_field_index("attributes"), field, rebuilt)
        total += count
    for column, message_type in (("resource", Resource), ("scope", InstrumentationScope)):
        values, count = _cut_messages(table[column].combine_chunks(), message_type, limit)
        if count:
            table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), values)
            total += count
    for column in (*_RESOURCE_COLUMNS, "scope_name", "scope_version"):
        values, count = _cut(table[column], limit)  # copies of resource/scope values: already counted
        if count:
            table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), values)
    table, count = _cut_events_and_links(table, limit)
    return table, total + count


# protobuf (upb) refuses messages nested deeper than 100: ~50 levels of arrays or ~33 of kvlists.
# Every such level carries an AnyValue array/kvlist tag byte (0x2a / 0x32), so a value with fewer
# than _NESTING_MARKERS of those bytes cannot be too deep and needs no parse.
_NESTING_MARKERS = 30


def _deep_candidates(values: pa.Array) -> np.ndarray:
    """Rows that could hold a value nested too deep: long enough, with enough nesting tag bytes."""
    n = len(values)
    candidates = np.zeros(n, bool)
    if n == 0 or _none_longer(values, _NESTING_CHECK_BYTES - 1):
        return candidates
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    for row in np.flatnonzero((offsets[1:] - offsets[:-1]) >= _NESTING_CHECK_BYTES).tolist():
        blob = values[row].as_py()
        candidates[row] = blob.count(b"\x2a") + blob.count(b"\x32") >= _NESTING_MARKERS
    return candidates


def _unparseable_spans(table: pa.Table) -> np.ndarray:
    """Spans holding nested values (arrays, kvlists, events, links) protobuf cannot parse back."""
    bad = np.zeros(table.num_rows, bool)
    attributes = table["attributes"].combine_chunks()
    items = attributes.values
    raw = items.field("bytes")
    events, links = table["events"].combine_chunks(), table["links"].combine_chunks()
    if all(_none_longer(v, _NESTING_CHECK_BYTES - 1) for v in (raw, events, links)):
        return bad
    types = items.field("type").to_numpy(zero_copy_only=False)
    complex_items = np.flatnonzero(
        ((types == AttrType.ARRAY) | (types == AttrType.KVLIST)) & _deep_candidates(raw)
    )
    if len(complex_items):
        owners = np.searchsorted(attributes.offsets.to_numpy(), complex_items, side="right") - 1
        for item, owner in zip(complex_items.tolist(), owners.tolist(), strict=True):
            parser = ArrayValue if types[item] == AttrType.ARRAY else KeyValueList
            try:
                parser.FromString(raw[item].as_py())
            except DecodeError:
                bad[owner] = True
    for row in np.flatnonzero(_deep_candidates(events) | _deep_candidates(links)).tolist():
        try:
            Span.FromString(events[row].as_py() + links[row].as_py())
        except DecodeError:
            bad[row] = True
    return bad
