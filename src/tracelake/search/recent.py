"""Search spans still in an ingester's memory: Arrow batches in arrival order, traces spread over
several batches, no summary.

Sorting everything an ingester holds for each search would cost seconds, so it goes in two steps:
1. per batch, unsorted, the span-level conditions (those needing the whole trace — trace duration,
   root, parent, child count — count as true) give a superset of the matching traces;
2. those traces' spans are gathered, sorted and searched exactly like a block, newest first, a chunk
   of traces at a time, until the collector has ``limit`` traces newer than anything left.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tracelake.encoding.v1.layout import sort_spans, to_block_rows
from tracelake.encoding.v1.summary import summarize
from tracelake.search.frame_search import search_frame
from tracelake.search.request import SearchRequest
from tracelake.search.results import Collector
from tracelake.traceql.ast import SpansetExpr, SpansetFilter, Structural
from tracelake.traceql.evaluate import Evaluator
from tracelake.traceql.frame import SpanFrame

_MIN_CHUNK_TRACES = 2_000


def _span_frame(table: pa.Table) -> SpanFrame:
    """An unsorted span table (SPAN_SCHEMA) seen as block rows, for span-level conditions only."""
    duration = pc.subtract_checked(
        table["end_time_unix_nano"].cast(pa.int64()), table["start_time_unix_nano"].cast(pa.int64())
    )
    duration = pc.max_element_wise(duration, 0).cast(pa.uint64())
    return SpanFrame(table.append_column("duration_nano", duration))


def _candidates(expr: SpansetExpr, table: pa.Table, ev: Evaluator) -> pa.Array:
    """Distinct trace ids of ``table`` that may satisfy ``expr`` (a superset)."""
    if isinstance(expr, SpansetFilter):
        mask = ev.field_mask(expr.expr)
        return pc.unique(table["trace_id"].filter(pa.array(mask)))
    # &&, || and structural operators alike keep the union: one side may sit in another batch;
    # the exact pass decides
    terms = (expr.lhs, expr.rhs) if isinstance(expr, Structural) else expr.terms
    parts = [_candidates(t, table, ev) for t in terms]
    return pc.unique(pa.chunked_array(parts, pa.binary(16)).combine_chunks())


def search_recent(tables: list[pa.Table], request: SearchRequest, collector: Collector) -> int:
    """Add the matching traces of ``tables`` to ``collector``; returns how many traces were inspected."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return 0
    ids, newest = [], []
    for table in tables:
        ev = Evaluator(_span_frame(table), relaxed=True)
        found = _candidates(request.query.expr, table, ev)
        if len(found):
            picked = table.filter(pc.is_in(table["trace_id"], value_set=found))
            per_trace = picked.group_by("trace_id").aggregate([("start_time_unix_nano", "max")])
            ids.append(per_trace["trace_id"].combine_chunks())
            newest.append(per_trace["start_time_unix_nano_max"].combine_chunks())
    if not ids:
        return 0
    grouped = (
        pa.table({"trace_id": pa.chunked_array(ids), "newest": pa.chunked_array(newest)})
        .group_by("trace_id")
        .aggregate([("newest", "max")])
        .sort_by([("newest_max", "descending")])
    )
    order_ids = grouped["trace_id"].combine_chunks()
    order_newest = grouped["newest_max"].to_numpy()
    chunk = max(_MIN_CHUNK_TRACES, 4 * request.limit)
    inspected = 0
    for lo in range(0, len(order_ids), chunk):
        if collector.done(int(order_newest[lo])):
            break
        wanted = order_ids.slice(lo, chunk)
        parts = [t.filter(pc.is_in(t["trace_id"], value_set=wanted)) for t in tables]
        spans = sort_spans(pa.concat_tables([p for p in parts if p.num_rows]))
        summary = summarize(spans)
        inspected += summary.num_rows
        for hit in search_frame(SpanFrame(to_block_rows(spans)), summary, request):
            collector.add(hit)
    return inspected
