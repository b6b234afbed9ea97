"""Search one block: the summary first (time range and duration bounds per trace, no span read), then
only the row groups holding candidate traces, only the columns the query needs, several row groups per
Parquet read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tracelake.encoding.v1.column_cache import ColumnCache
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.search.frame_search import search_frame, summary_window_mask
from tracelake.search.request import SearchRequest
from tracelake.search.results import SpanHit, TraceHit
from tracelake.traceql.ast import Attribute, Intrinsic, Scope
from tracelake.traceql.evaluate import (
    Evaluator,
    columns_for,
    condition_span_attributes,
    fields_used,
    resource_attribute_names,
    selected_span_attributes,
    shown_values,
)
from tracelake.traceql.frame import SpanFrame

_ROWS_PER_READ = 128_000  # spans decoded per Parquet read: bounds memory; later reads may be skipped
SPAN_DETAIL_COLUMNS = ("span_id", "name", "start_time_unix_nano", "duration_nano")


@dataclass
class BlockSearchResult:
    hits: list[TraceHit] = field(default_factory=list)
    inspected_bytes: int = 0
    inspected_traces: int = 0


def search_block(
    reader: BlockReader,
    summary: pa.Table,
    request: SearchRequest,
    newer_than: int | None = None,
    cache: ColumnCache | None = None,
) -> BlockSearchResult:
    """Matching traces of the block, at most ``request.limit``, newest first. ``newer_than``: the
    search already holds ``limit`` traces starting at or after it, so older ones cannot enter the
    answer and their row groups are not read. With ``cache``, narrow columns are read once per block
    and kept decoded; the whole block is then evaluated at once."""
    result = BlockSearchResult()
    starts = summary["start_time_unix_nano"].to_numpy()
    candidates = summary_window_mask(summary, request)
    if newer_than is not None:
        candidates &= starts >= newer_than
    if not candidates.any():
        return result
    groups = reader.meta.row_groups
    group_first = np.array([g.first_row for g in groups], np.int64)
    first_row = summary["first_row"].to_numpy()
    trace_group = np.searchsorted(group_first, first_row, side="right") - 1
    sizes = reader.column_chunk_sizes()
    # trace boundaries come from the summary: the trace id column is read only when the query asks
    trace_id = any(isinstance(f, Intrinsic) and f is Intrinsic.TRACE_ID for f in fields_used(request.query))
    present = [c for c in columns_for(request.query, False) if c in sizes and (c != "trace_id" or trace_id)]
    nested = (
        "attributes" in present
        and bool(condition_span_attributes(request.query))
        and _may_hold(reader.meta.span_attribute_keys, request)
    )
    resource_keys = reader.meta.resource_attribute_keys
    if resource_keys is not None and not resource_attribute_names(request.query) & set(resource_keys):
        present = [c for c in present if c != "resource"]  # no resource of the block has the keys
    flat_columns = [c for c in present if c != "attributes"]
    cached = cache is not None and cache.cacheable(flat_columns)
    unread = np.ones(len(groups), bool)
    while True:
        # row groups holding the newest candidates first; once ``limit`` traces are held, only
        # groups with a newer candidate are still worth reading
        remaining = candidates & unread[trace_group]
        if not remaining.any():
            break
        newest = np.zeros(len(groups), np.uint64)
        np.maximum.at(newest, trace_group[remaining], starts[remaining])
        wanted = np.flatnonzero(newest)
        order = wanted[np.argsort(-newest[wanted].astype(np.int64), kind="stable")]
        batch = _first_batch(order, [groups[g].rows for g in order])
        unread[batch] = False
        if cached:
            assert cache is not None
            table = _cached_rows(cache, reader, batch, flat_columns, group_first)
        else:
            table = reader.read_row_groups(batch, flat_columns)
        if nested:
            table = table.append_column("attributes", reader.read_attributes(batch))
        read = flat_columns + (["attributes"] if nested else [])
        result.inspected_bytes += int(sum(sizes[c][batch].sum() for c in read))
        # the frame holds the batch's groups in the order read; its summary rows follow that order
        traces = np.concatenate([np.flatnonzero(trace_group == g) for g in batch])
        lengths = np.array([groups[g].rows for g in batch], np.int64)
        offsets = np.zeros(len(groups), np.int64)
        offsets[batch] = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        group_of = trace_group[traces]
        rows = first_row[traces] - group_first[group_of] + offsets[group_of]
        block_rows = np.repeat(group_first[batch] - offsets[batch], lengths) + np.arange(int(lengths.sum()))
        result.inspected_traces += len(traces)
        frame = SpanFrame(table, rows)
        hits = search_frame(frame, summary.take(pa.array(traces)), request, block_rows, candidates[traces])
        result.hits = _newest(result.hits + hits, request.limit)
        if len(result.hits) >= request.limit:
            candidates = candidates & (starts >= result.hits[-1].start_ns)
    if request.traceql:
        result.inspected_bytes += _fill_spans(reader, result.hits, group_first, request, cache)
    return result


def _cached_rows(
    cache: ColumnCache, reader: BlockReader, batch: list[int], columns: list[str], group_first: np.ndarray
) -> pa.Table:
    """The batch's row groups of ``columns`` from the decoded columns kept in memory (zero-copy slices)."""
    groups = reader.meta.row_groups
    rows = sum(groups[g].rows for g in batch)
    if not columns:  # nothing but trace boundaries needed: a table of the right length
        return pa.table({"_rows": pa.nulls(rows)})
    out = {}
    for column in columns:
        whole = cache.get(reader, column)
        out[column] = pa.chunked_array([whole.slice(int(group_first[g]), groups[g].rows) for g in batch])
    return pa.table(out)


def _newest(hits: list[TraceHit], limit: int) -> list[TraceHit]:
    return sorted(hits, key=lambda h: -h.start_ns)[:limit]


def _fill_spans(
    reader: BlockReader,
    hits: list[TraceHit],
    group_first: np.ndarray,
    request: SearchRequest,
    cache: ColumnCache | None = None,
) -> int:
    """Id, name, start and duration of the listed spans, read from just their row groups (a search
    decides on the condition columns alone; the ``limit`` traces kept need these few rows)."""
    spans = [s for h in hits for s in h.spans]
    if not spans:
        return 0
    rows = np.array([s.row for s in spans], np.int64)
    span_group = np.searchsorted(group_first, rows, side="right") - 1
    groups = np.unique(span_group).tolist()
    sizes = reader.column_chunk_sizes()
    lengths = np.array([reader.meta.row_groups[g].rows for g in groups], np.int64)
    offsets = dict(zip(groups, np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist(), strict=True))
    at = np.array([offsets[g] for g in span_group.tolist()], np.int64) + rows - group_first[span_group]
    held: list[pa.Array | None] = []
    if cache is not None:  # small blocks: keep the columns; big ones: read the few rows needed
        fill = cache.affordable(reader, SPAN_DETAIL_COLUMNS)
        held = [cache.get(reader, c) if fill else cache.peek(reader, c) for c in SPAN_DETAIL_COLUMNS]
    if held and all(h is not None for h in held):
        whole = pa.table(dict(zip(SPAN_DETAIL_COLUMNS, held, strict=True)))
        picked = whole.take(pa.array(rows)).to_pydict()
    else:
        table = reader.read_row_groups(groups, list(SPAN_DETAIL_COLUMNS))
        picked = table.take(pa.array(at)).to_pydict()
    for i, span in enumerate(spans):
        span.span_id = picked["span_id"][i]
        span.name = picked["name"][i] or ""
        span.start_ns = picked["start_time_unix_nano"][i]
        span.duration_ns = picked["duration_nano"][i]
    inspected = int(sum(sizes[c][groups].sum() for c in SPAN_DETAIL_COLUMNS))
    selected = selected_span_attributes(request.query)
    if selected:
        _add_selected(reader, groups, at, spans, selected)
        inspected += int(sizes["attributes"][groups].sum())
    return inspected


def _add_selected(
    reader: BlockReader, groups: list[int], at: np.ndarray, spans: list[SpanHit], selected: list[Attribute]
) -> None:
    """Values of ``select(...)`` span attributes for the listed spans (span values win over the
    resource's, as for unscoped conditions)."""
    frame = SpanFrame(pa.table({"attributes": reader.read_attributes(groups)}))
    ev = Evaluator(frame)
    for attr in selected:
        values = shown_values(ev, Attribute(Scope.SPAN, attr.name), at)
        for i, span in enumerate(spans):
            value = values.get(int(at[i]))
            if value is not None:
                span.attributes = [(k, v) for k, v in span.attributes if k != attr.name] + [
                    (attr.name, value)
                ]


def _may_hold(keys: list[str] | None, request: SearchRequest) -> bool:
    """Whether the block's generic span attributes may include one the query names."""
    if keys is None:
        return True
    return any(name in keys for name in condition_span_attributes(request.query))


def _first_batch(order: np.ndarray, rows: list[int]) -> list[int]:
    """Leading groups of ``order`` up to ``_ROWS_PER_READ`` rows (at least one)."""
    batch: list[int] = []
    count = 0
    for group, n in zip(order.tolist(), rows, strict=True):
        if batch and count + n > _ROWS_PER_READ:
            break
        batch.append(group)
        count += n
    return batch
