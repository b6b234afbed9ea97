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
from tracelake.traceql.evaluate import columns_for, span_attribute_names
from tracelake.traceql.frame import SpanFrame

_ROWS_PER_READ = 64_000  # spans decoded per Parquet read: bounds memory, amortises per-call cost


@dataclass
class BlockSearchResult:
    hits: list[TraceHit] = field(default_factory=list)
    inspected_bytes: int = 0
    inspected_traces: int = 0


def search_block(reader: BlockReader, summary: pa.Table, request: SearchRequest) -> BlockSearchResult:
    """Matching traces of the block, at most ``request.limit``, newest first."""
    result = BlockSearchResult()
    candidates = summary_window_mask(summary, request)
    if not candidates.any():
        return result
    groups = reader.meta.row_groups
    group_first = np.array([g.first_row for g in groups], np.int64)
    trace_group = np.searchsorted(group_first, summary["first_row"].to_numpy(), side="right") - 1
    wanted = np.unique(trace_group[candidates])
    pf = reader.parquet()
    present = [c for c in columns_for(request.query, request.traceql) if c in pf.schema_arrow.names]
    nested = "attributes" in present and _may_hold(reader.meta.span_attribute_keys, request)
    flat_columns = [c for c in present if c != "attributes"]
    for batch in _batches(wanted, [groups[g].rows for g in wanted]):
        table = reader.read_row_groups(batch, flat_columns)
        if nested:
            # one read per row group: Arrow cannot return nested columns of several groups at once
            parts = [reader.read_row_groups([g], ["attributes"])["attributes"] for g in batch]
            table = table.append_column("attributes", pa.chunked_array([c for p in parts for c in p.chunks]))
        result.inspected_bytes += _compressed_bytes(
            pf, batch, set(flat_columns) | ({"attributes"} if nested else set())
        )
        in_batch = np.isin(trace_group, batch)
        batch_summary = summary.filter(pa.array(in_batch))
        result.inspected_traces += batch_summary.num_rows
        result.hits.extend(search_frame(SpanFrame(table), batch_summary, request))
    result.hits.sort(key=lambda h: -h.start_ns)
    del result.hits[request.limit :]
    return result


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


def _compressed_bytes(pf, groups: list[int], columns: set[str]) -> int:
    total = 0
    for g in groups:
        meta = pf.metadata.row_group(g)
        for j in range(meta.num_columns):
            chunk = meta.column(j)
            if chunk.path_in_schema.split(".")[0] in columns:
                total += chunk.total_compressed_size
    return total
