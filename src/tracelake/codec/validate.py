"""Decode and validate one request's spans: the distributor's checks, as a pure function.

Pure so that WAL replay repeats the same decisions: every check is relative to the request's receive
time, not the clock at replay. Columnar throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracelake.codec.assemble import DecodedSpans
from tracelake.codec.decode import decode_otlp
from tracelake.model.schema import DEDICATED_SPAN_ATTRIBUTES, AttrType

REASON_TIME_RANGE = "timestamp_out_of_range"


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


def _cut(values: pa.Array | pa.ChunkedArray, limit: int) -> tuple[pa.Array | pa.ChunkedArray, int]:
    """Values longer than ``limit`` bytes cut to ``limit`` code points (so never mid-character)."""
    lengths = pc.binary_length(values)
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= limit:
        return values, 0
    too_long = pc.greater(lengths, limit)
    count = int(pc.sum(too_long).as_py())
    return pc.if_else(too_long, pc.utf8_slice_codeunits(values, 0, limit), values), count


def _truncate_strings(table: pa.Table, limit: int) -> tuple[pa.Table, int]:
    total = 0
    for column in _STRING_COLUMNS:
        values, count = _cut(table[column], limit)
        if count:
            table = table.set_column(table.schema.get_field_index(column), column, values)
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
    return table, total
