"""Search one block: the summary first (time range and duration bounds per trace, no span read), then
only the row groups holding candidate traces, only the columns the query needs, several row groups per
Parquet read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.search.frame_search import search_frame, summary_window_mask
from tracelake.search.request import SearchRequest
from tracelake.search.results import TraceHit
from tracelake.traceql.ast import Intrinsic
from tracelake.traceql.evaluate import attribute_leaves, columns_for, fields_used, span_attribute_names
from tracelake.traceql.frame import SpanFrame

_ROWS_PER_READ = 256_000  # spans decoded per Parquet read: bounds memory, amortises per-call cost
SPAN_DETAIL_COLUMNS = ("span_id", "name", "start_time_unix_nano", "duration_nano")


@dataclass
class BlockSearchResult:
    hits: list[TraceHit] = field(default_factory=list)
    inspected_bytes: int = 0
    inspected_traces: int = 0


def search_block(
    reader: BlockReader, summary: pa.Table, request: SearchRequest, newer_than: int | None = None
) -> BlockSearchResult:
    """Matching traces of the block, at most ``request.limit``, newest first. ``newer_than``: the
    search already holds ``limit`` traces starting at or after it, so older ones cannot enter the
    answer and their row groups are not read."""
    result = BlockSearchResult()
    candidates = summary_window_mask(summary, request)
    if newer_than is not None:
        candidates &= summary["start_time_unix_nano"].to_numpy() >= newer_than
    if not candidates.any():
        return result
    groups = reader.meta.row_groups
    group_first = np.array([g.first_row for g in groups], np.int64)
    trace_group = np.searchsorted(group_first, summary["first_row"].to_numpy(), side="right") - 1
    wanted = np.unique(trace_group[candidates])
    first_row = summary["first_row"].to_numpy()
    sizes = reader.column_chunk_sizes()
    # trace boundaries come from the summary: the trace id column is read only when the query asks
    trace_id = any(isinstance(f, Intrinsic) and f is Intrinsic.TRACE_ID for f in fields_used(request.query))
    present = [c for c in columns_for(request.query, False) if c in sizes and (c != "trace_id" or trace_id)]
    nested = "attributes" in present and _may_hold(reader.meta.span_attribute_keys, request)
    flat_columns = [c for c in present if c != "attributes"]
    leaves = [f"attributes.list.element.{leaf}" for leaf in attribute_leaves(request.query)]
    for batch in _batches(wanted, [groups[g].rows for g in wanted]):
        table = reader.read_row_groups(batch, flat_columns)
        if nested:
            # one read per row group: Arrow cannot return nested columns of several groups at once
            parts = [reader.read_row_groups([g], leaves)["attributes"] for g in batch]
            table = table.append_column("attributes", pa.chunked_array([c for p in parts for c in p.chunks]))
        read = flat_columns + (leaves if nested else [])
        result.inspected_bytes += int(sum(sizes[c][batch].sum() for c in read))
        in_batch = np.isin(trace_group, batch)
        batch_summary = summary.filter(pa.array(in_batch))
        offsets = np.zeros(len(groups), np.int64)
        offsets[batch] = np.cumsum([0] + [groups[g].rows for g in batch[:-1]])
        traces = np.flatnonzero(in_batch)
        group_of = trace_group[traces]
        rows = first_row[traces] - group_first[group_of] + offsets[group_of]
        result.inspected_traces += batch_summary.num_rows
        block_rows = np.repeat(group_first[batch] - offsets[batch], [groups[g].rows for g in batch])
        block_rows += np.arange(len(block_rows))
        hits = search_frame(SpanFrame(table, rows), batch_summary, request, block_rows, candidates[in_batch])
        result.hits = _newest(result.hits + hits, request.limit)
    if request.traceql:
        result.inspected_bytes += _fill_spans(reader, result.hits, group_first)
    return result


def _newest(hits: list[TraceHit], limit: int) -> list[TraceHit]:
    return sorted(hits, key=lambda h: -h.start_ns)[:limit]


def _fill_spans(reader: BlockReader, hits: list[TraceHit], group_first: np.ndarray) -> int:
    """Id, name, start and duration of the listed spans, read from just their row groups (a search
    decides on the condition columns alone; the ``limit`` traces kept need these few rows)."""
    spans = [s for h in hits for s in h.spans]
    if not spans:
        return 0
    rows = np.array([s.row for s in spans], np.int64)
    span_group = np.searchsorted(group_first, rows, side="right") - 1
    groups = np.unique(span_group).tolist()
    table = reader.read_row_groups(groups, list(SPAN_DETAIL_COLUMNS))
    sizes = reader.column_chunk_sizes()
    lengths = np.array([reader.meta.row_groups[g].rows for g in groups], np.int64)
    offsets = dict(zip(groups, np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist(), strict=True))
    at = np.array([offsets[g] for g in span_group.tolist()], np.int64) + rows - group_first[span_group]
    picked = table.take(pa.array(at)).to_pydict()
    for i, span in enumerate(spans):
        span.span_id = picked["span_id"][i]
        span.name = picked["name"][i] or ""
        span.start_ns = picked["start_time_unix_nano"][i]
        span.duration_ns = picked["duration_nano"][i]
    return int(sum(sizes[c][groups].sum() for c in SPAN_DETAIL_COLUMNS))


def _may_hold(keys: list[str] | None, request: SearchRequest) -> bool:
    """Whether the block's generic span attributes may include one the query names."""
    if keys is None:
        return True
    wanted = span_attribute_names(request.query)
    return any(name in keys for name in wanted)


def _batches(groups: np.ndarray, rows: list[int]) -> list[list[int]]:
    batches: list[list[int]] = [[]]
    count = 0
    for group, n in zip(groups.tolist(), rows, strict=True):
        if batches[-1] and count + n > _ROWS_PER_READ:
            batches.append([])
            count = 0
        batches[-1].append(group)
        count += n
    return [b for b in batches if b]
