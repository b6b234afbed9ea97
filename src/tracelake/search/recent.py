"""Search spans still in an ingester's memory: Arrow batches in arrival order, traces spread over
several batches, no summary.

Sorting everything an ingester holds for each search would cost seconds, so it goes in two steps:
1. per batch, unsorted, the span-level conditions (those needing the whole trace — trace duration,
   root, parent, child count — count as true) give each spanset's traces; combined across batches
   as the query combines spansets, they are a superset of the matching traces;
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
from tracelake.traceql.ast import Query, SpansetExpr, SpansetFilter, SpansetOr, Structural
from tracelake.traceql.evaluate import Evaluator, columns_for
from tracelake.traceql.frame import SpanFrame

_MIN_CHUNK_TRACES = 2_000


def _span_frame(table: pa.Table) -> SpanFrame:
    """An unsorted span table (SPAN_SCHEMA) seen as block rows, for span-level conditions only."""
    duration = pc.subtract_checked(
        table["end_time_unix_nano"].cast(pa.int64()), table["start_time_unix_nano"].cast(pa.int64())
    )
    duration = pc.max_element_wise(duration, 0).cast(pa.uint64())
    return SpanFrame(table.append_column("duration_nano", duration))


def _unique(parts: list[pa.Array]) -> pa.Array:
    if not parts:
        return pa.array([], pa.binary(16))
    return pc.unique(pa.chunked_array(parts, pa.binary(16)).combine_chunks())


def _candidates(expr: SpansetExpr, batches: list[tuple[pa.Table, Evaluator]]) -> pa.Array:
    """Distinct trace ids that may satisfy ``expr`` (a superset): a spanset filter's ids come from
    every batch; ``&&`` and structural operators need both sides somewhere in the trace (the ``!``
    forms only their right side); ``||`` either."""
    if isinstance(expr, SpansetFilter):
        return _unique(
            [pc.unique(t["trace_id"].filter(pa.array(ev.field_mask(expr.expr)))) for t, ev in batches]
        )
    if isinstance(expr, Structural):
        if expr.op.value.startswith("!"):
            return _candidates(expr.rhs, batches)
        terms: tuple[SpansetExpr, ...] = (expr.lhs, expr.rhs)
    else:
        terms = expr.terms
    parts = [_candidates(t, batches) for t in terms]
    if isinstance(expr, SpansetOr):
        return _unique(parts)
    result = parts[0]
    for part in parts[1:]:
        result = result.filter(pc.is_in(result, value_set=part))
    return result


def _one_table(tables: list[pa.Table], columns: list[str] | None = None) -> pa.Table:
    """The ingester's batches as one table (zero-copy: the batches become chunks), ``columns`` only."""
    if columns is not None:
        wanted = [c for c in dict.fromkeys(columns) if c in tables[0].column_names] if tables else []
        tables = [t.select(wanted) for t in tables]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables).unify_dictionaries() if len(tables) > 1 else tables[0]


def candidate_traces(tables: list[pa.Table], query: Query) -> pa.Array:
    """Trace ids of ``tables`` (SPAN_SCHEMA, unsorted) that may match ``query``: a superset.

    The batches are evaluated as one table: per-batch evaluation costs a fixed overhead per batch,
    and an ingester holds thousands of small batches (one per push)."""
    columns = [*columns_for(query, with_spans=False), "start_time_unix_nano", "end_time_unix_nano"]
    table = _one_table(tables, columns)
    if not table.num_rows:
        return pa.array([], pa.binary(16))
    return _candidates(query.expr, [(table, Evaluator(_span_frame(table), relaxed=True))])


def whole_traces(tables: list[pa.Table], trace_ids: pa.Array) -> pa.Table:
    """The spans of ``trace_ids`` from every table, sorted and in the block layout."""
    table = _one_table(tables)
    return to_block_rows(sort_spans(table.filter(pc.is_in(table["trace_id"], value_set=trace_ids))))


def search_recent(tables: list[pa.Table], request: SearchRequest, collector: Collector) -> tuple[int, int]:
    """Add the matching traces of ``tables`` to ``collector``; returns (traces inspected, bytes of
    the columns the conditions read)."""
    table = _one_table(tables)
    if not table.num_rows:
        return 0, 0
    wanted = set(columns_for(request.query, with_spans=False)) | {"end_time_unix_nano"}
    inspected_bytes = table.select([c for c in table.column_names if c in wanted]).nbytes
    found = candidate_traces([table], request.query)
    if not len(found):
        return 0, inspected_bytes
    picked = table.select(["trace_id", "start_time_unix_nano"])
    picked = picked.filter(pc.is_in(picked["trace_id"], value_set=found))
    grouped = (
        picked.group_by("trace_id", use_threads=False)
        .aggregate([("start_time_unix_nano", "max")])
        .sort_by([("start_time_unix_nano_max", "descending")])
    )
    order_ids = grouped["trace_id"].combine_chunks()
    order_newest = grouped["start_time_unix_nano_max"].to_numpy()
    chunk = max(_MIN_CHUNK_TRACES, 4 * request.limit)
    inspected = 0
    for lo in range(0, len(order_ids), chunk):
        if collector.done(int(order_newest[lo])):
            break
        wanted_ids = order_ids.slice(lo, chunk)
        spans = sort_spans(table.filter(pc.is_in(table["trace_id"], value_set=wanted_ids)))
        summary = summarize(spans)
        inspected += summary.num_rows
        for hit in search_frame(SpanFrame(to_block_rows(spans)), summary, request):
            collector.add(hit)
    return inspected, inspected_bytes
