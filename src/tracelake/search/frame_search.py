"""Search one frame of whole traces with its per-trace summary: the step blocks and the ingester's
memory share. Masks are columnar; Python objects are built only for the traces that can still make
the answer (the ``limit`` newest of the frame)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tracelake.errors import BlockFormatError
from tracelake.search.request import SearchRequest
from tracelake.search.results import SpanHit, TraceHit
from tracelake.traceql.evaluate import Evaluator, evaluate, shown_fields, shown_key, shown_values
from tracelake.traceql.frame import SpanFrame, plain


def summary_window_mask(summary: pa.Table, request: SearchRequest) -> np.ndarray:
    """Traces overlapping the request's time range whose duration is within its bounds."""
    start = summary["start_time_unix_nano"].to_numpy()
    duration = summary["duration_nano"].to_numpy()
    keep = np.ones(len(start), bool)
    if request.start_ns is not None and request.end_ns is not None:
        keep &= (start <= request.end_ns) & (start + duration >= request.start_ns)
    if request.min_duration_ns is not None:
        keep &= duration >= request.min_duration_ns
    if request.max_duration_ns is not None:
        keep &= duration <= request.max_duration_ns
    return keep


def search_frame(
    frame: SpanFrame,
    summary: pa.Table,
    request: SearchRequest,
    block_rows: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> list[TraceHit]:
    """Matching traces of ``frame`` (rows in trace order; ``summary`` one row per trace, same order),
    at most ``request.limit`` of them, newest first.

    Without the span columns (``span_id``...), listed spans carry only their attributes and their
    row in the block (``block_rows[row]``): the caller reads the rest for the few traces kept.
    ``allowed``: the traces that may still enter the answer (default: those in the request's window)."""
    if frame.traces != summary.num_rows:
        raise BlockFormatError(f"summary has {summary.num_rows} traces, data {frame.traces}")
    if frame.n == 0:
        return []
    match = evaluate(request.query, frame)
    traces = match.traces & (summary_window_mask(summary, request) if allowed is None else allowed)
    chosen = np.flatnonzero(traces)
    if not len(chosen):
        return []
    starts = summary["start_time_unix_nano"].to_numpy()
    if len(chosen) > request.limit:  # the newest ``limit`` (exact integers: starts differ by 1 ns)
        chosen = chosen[np.lexsort((chosen, -starts[chosen].astype(np.int64)))[: request.limit]]
    span_rows = np.flatnonzero(match.spans & frame.per_span(_scatter(frame.traces, chosen)))
    span_trace = frame.trace_of_row[span_rows]
    matched = np.bincount(span_trace, minlength=frame.traces)
    rank = np.arange(len(span_rows)) - np.searchsorted(span_trace, span_trace)  # rows are in trace order
    shown = span_rows[rank < request.spss] if request.traceql else np.zeros(0, np.int64)
    return _hits(frame, summary, request, chosen, shown, matched, block_rows)


def _scatter(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[rows] = True
    return mask


def _hits(
    frame: SpanFrame,
    summary: pa.Table,
    request: SearchRequest,
    chosen: np.ndarray,
    shown: np.ndarray,
    matched: np.ndarray,
    block_rows: np.ndarray | None,
) -> list[TraceHit]:
    picked = summary.take(pa.array(chosen)).to_pylist()
    hits = {}
    for trace, row in zip(chosen.tolist(), picked, strict=True):
        stats = {s["service"] or "": (s["span_count"], s["error_count"]) for s in row["service_stats"] or []}
        hits[trace] = TraceHit(
            trace_id=row["trace_id"],
            root_service_name=row["root_service_name"],
            root_span_name=row["root_span_name"],
            start_ns=row["start_time_unix_nano"],
            duration_ns=row["duration_nano"],
            matched=int(matched[trace]),
            service_stats=stats if request.traceql else {},
        )
    if len(shown):
        _add_spans(frame, request, shown, hits, block_rows)
    return list(hits.values())


def _add_spans(
    frame: SpanFrame,
    request: SearchRequest,
    rows: np.ndarray,
    hits: dict[int, TraceHit],
    block_rows: np.ndarray | None,
) -> None:
    ev = Evaluator(frame)
    values = [(shown_key(f), shown_values(ev, f, rows)) for f in shown_fields(request.query)]
    if frame.has("span_id"):
        take = pa.array(rows)
        ids = frame.column("span_id").take(take).to_pylist()
        names = plain(frame.column("name")).take(take).to_pylist()
        starts = frame.starts[rows].tolist()
        durations = frame.durations[rows].tolist()
    for i, row in enumerate(rows.tolist()):
        attributes = [(key, by_row[row]) for key, by_row in values if row in by_row]
        if frame.has("span_id"):
            span = SpanHit(ids[i], names[i] or "", starts[i], durations[i], attributes)
        else:
            assert block_rows is not None
            span = SpanHit(b"", "", 0, 0, attributes, row=int(block_rows[row]))
        hits[int(frame.trace_of_row[row])].spans.append(span)
