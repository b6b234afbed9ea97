"""Compact blocks of format tl1: a streaming k-way merge by trace id over the inputs' rows.

Each input is read in record batches of a few thousand rows (``iter_batches``), never as a whole block,
so memory is about ``inputs x batch_rows`` spans whatever the block sizes. Inputs are sorted by trace
id, so at any moment every row whose trace id is below the smallest "last id buffered" of all inputs is
final: no later batch of any input can hold more of those traces. Those rows are taken from every
buffer, merged, deduplicated and handed to a ``BlockWriter``; the buffers keep the rest.

Rows stay block rows (``data.parquet``'s schema) all the way to the writer: no conversion to the span
table and back. Each row's parent span id is read from ``parent_index`` (or ``parent_span_id``) within
its input, and ``parent_index`` is recomputed within the merged trace, so a parent that lived in
another input block resolves again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta, check_format
from tracelake.config import BlockConfig
from tracelake.encoding.v1.create import BlockWriter
from tracelake.encoding.v1.layout import MAX_INDEXED_KEYS, parent_ids_of_rows, resolve_parents
from tracelake.model.ids import id_matrix, trace_starts
from tracelake.model.schema import SPAN_ID_BYTES

# Sort keys of a merged batch: trace id then start time (the block order); span id and end time break
# ties so that the copies of a span, which share all four, end up next to each other.
_MERGE_ORDER = [
    ("trace_id", "ascending"),
    ("start_time_unix_nano", "ascending"),
    ("span_id", "ascending"),
    ("end_time_unix_nano", "ascending"),
]
_KEY_COLUMNS = {"trace_id", "span_id", "start_time_unix_nano"}
# Block-row columns that hold the parent: compared as the parent span id (``parent_ids_of_rows``),
# since two copies of a span may sit at different rows of their traces.
_PARENT_COLUMNS = {"parent_index", "parent_span_id"}


@dataclass
class MergeStats:
    spans_in: int = 0
    spans_out: int = 0
    duplicates: int = 0  # exact duplicate spans dropped
    traces_out: int = 0
    traces_combined: int = 0  # traces whose spans came from more than one input


def _sortable_ids(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Trace ids as numpy ``S16`` values: they compare like the bytes (searchsorted works on them)."""
    return np.ascontiguousarray(id_matrix(ids)).view("S16").ravel()


class _Cursor:
    """One input's buffered rows (``data.parquet`` rows, sorted by trace id), refilled batch by batch."""

    def __init__(self, batches: Iterator[pa.RecordBatch], batch_rows: int) -> None:
        self._batches = batches
        self._batch_rows = batch_rows
        self.rows: pa.Table | None = None
        self.ids = np.empty(0, "S16")
        self.exhausted = False

    def needs_refill(self) -> bool:
        # Short of a batch, or holding only its last (maybe unfinished) trace: nothing could be emitted.
        return not self.exhausted and (len(self.ids) < self._batch_rows or self.ids[0] == self.ids[-1])

    def refill(self) -> None:
        batch = next(self._batches, None)
        if batch is None:
            self.exhausted = True
            return
        table = pa.Table.from_batches([batch])
        self.rows = table if self.rows is None else pa.concat_tables([self.rows, table])
        self.ids = np.concatenate([self.ids, _sortable_ids(batch.column("trace_id"))])

    def take(self, n: int) -> pa.Table:
        assert self.rows is not None
        head = self.rows.slice(0, n)
        self.rows = self.rows.slice(n)
        self.ids = self.ids[n:]
        return head


def merge_sorted_inputs(
    inputs: list[Iterator[pa.RecordBatch]], batch_rows: int, stats: MergeStats, emit_rows: int | None = None
) -> Iterator[pa.Table]:
    """Whole traces in increasing trace-id order (block rows, deduplicated, ``parent_index`` resolved
    within the merged traces) from the inputs' ``data.parquet`` batches, each sorted by trace id.

    Each yielded table holds about ``emit_rows`` spans (default: one batch per input) or one trace,
    whichever is larger: merging, sorting and encoding copy it a few times, so it is kept small.
    """
    cursors = [_Cursor(batches, batch_rows) for batches in inputs]
    while True:
        for cursor in cursors:
            while cursor.needs_refill():
                cursor.refill()
        active = [c for c in cursors if len(c.ids)]
        if not active:
            return
        watermark = min(c.ids[-1] for c in active)
        # Rows of the watermark trace are final only if every input that ends on it has no more rows.
        side = "right" if all(c.exhausted for c in active if c.ids[-1] == watermark) else "left"
        share = max(1, (emit_rows or batch_rows * len(cursors)) // len(active))
        lower = min(c.ids[min(share, len(c.ids) - 1)] for c in active)
        if lower < watermark and lower > min(c.ids[0] for c in active):
            watermark, side = lower, "left"  # a smaller step: rows below an id that some input holds
        parts = []
        for cursor in active:
            n = int(np.searchsorted(cursor.ids, watermark, side=side))
            if n:
                parts.append(cursor.take(n))
        if parts:
            yield merge_rows(parts, stats)


def _u64_keys(ids: np.ndarray) -> list[np.ndarray]:
    """An (n, 8k) id matrix as k uint64 columns, most significant first: they sort like the bytes."""
    return list(np.ascontiguousarray(ids).view(">u8").astype(np.uint64).T)


def merge_rows(parts: list[pa.Table], stats: MergeStats) -> pa.Table:
    """Block rows of whole traces from several inputs (each sorted by trace id and start) -> block rows
    in block order, exact duplicates once, ``parent_index`` recomputed within the merged traces.

    The order is computed in numpy on the key columns (trace id, start, span id, end: ``_MERGE_ORDER``)
    and applied with one ``take``, skipped when the rows are already in order.
    """
    table = pa.concat_tables(parts).unify_dictionaries() if len(parts) > 1 else parts[0]
    n = table.num_rows
    trace_ids = id_matrix(table["trace_id"])
    # Traces of an input: a trace id change or the start of the next input's rows.
    new_trace = trace_starts(trace_ids)
    new_trace[np.cumsum([0] + [p.num_rows for p in parts[:-1]])] = True
    parent_ids, has_parent = parent_ids_of_rows(table, new_trace)
    start = table["start_time_unix_nano"].to_numpy()
    end = start + table["duration_nano"].to_numpy()  # uint64 wraps back: the span's end time
    span_key = _u64_keys(id_matrix(table["span_id"]))
    order = np.lexsort([end, *span_key[::-1], start, *_u64_keys(trace_ids)[::-1]])
    duplicate = _duplicates(table, order, trace_ids, span_key[0], start, parent_ids, has_parent)
    keep = order[~duplicate] if duplicate.any() else order
    dropped = n - len(keep)
    if len(keep) != n or (keep != np.arange(n)).any():
        table = table.combine_chunks().take(pa.array(keep))
        trace_ids, parent_ids, has_parent = trace_ids[keep], parent_ids[keep], has_parent[keep]
    merged_trace = trace_starts(trace_ids)
    parent_index, parent_span_id = resolve_parents(
        trace_ids, id_matrix(table["span_id"]), parent_ids, has_parent, merged_trace
    )
    table = table.set_column(table.schema.get_field_index("parent_index"), "parent_index", parent_index)
    table = table.set_column(table.schema.get_field_index("parent_span_id"), "parent_span_id", parent_span_id)
    traces = int(merged_trace.sum())
    stats.traces_combined += int(new_trace.sum()) - traces
    stats.spans_in += n
    stats.spans_out += table.num_rows
    stats.duplicates += dropped
    stats.traces_out += traces
    return table


def _duplicates(
    table: pa.Table,
    order: np.ndarray,
    trace_ids: np.ndarray,
    span_key: np.ndarray,
    start: np.ndarray,
    parent_ids: np.ndarray,
    has_parent: np.ndarray,
) -> np.ndarray:
    """``duplicate_rows`` for block rows: a mask over ``order`` (positions in merge order)."""
    n = len(order)
    out = np.zeros(n, bool)
    if n < 2:
        return out
    t, s, st = trace_ids[order], span_key[order], start[order]
    same_key = np.zeros(n, bool)
    same_key[1:] = (t[1:] == t[:-1]).all(axis=1) & (s[1:] == s[:-1]) & (st[1:] == st[:-1])
    if not same_key.any():
        return out
    # Only the rows of runs take part; their span ids are compared again with the full id below.
    in_run = same_key.copy()
    in_run[:-1] |= same_key[1:]
    run_rows = order[in_run]
    subset = table.take(pa.array(run_rows))
    parent = pa.Array.from_buffers(
        pa.binary(SPAN_ID_BYTES),
        len(run_rows),
        [
            pa.array(has_parent[run_rows]).buffers()[1],
            pa.py_buffer(np.ascontiguousarray(parent_ids[run_rows])),
        ],
    )
    skip = _KEY_COLUMNS | _PARENT_COLUMNS
    columns = [subset[name].combine_chunks() for name in subset.column_names if name not in skip]
    columns.append(parent)
    out[in_run] = _run_duplicates(same_key[in_run], columns)
    return out


def _run_duplicates(same_key: np.ndarray, columns: list[pa.Array]) -> np.ndarray:
    """Rows equal in every one of ``columns`` to an earlier row of their run (``same_key``: the row
    continues the previous row's run)."""
    n = len(same_key)
    out = np.zeros(n, bool)
    rows = np.arange(n)
    run_position = rows - np.maximum.accumulate(np.where(same_key, 0, rows))
    for distance in range(1, int(run_position.max()) + 1):
        here = np.flatnonzero((run_position >= distance) & ~out)
        if not len(here):
            continue
        earlier, later = pa.array(here - distance), pa.array(here)
        same = np.ones(len(here), bool)
        for column in columns:
            same &= values_equal(column.take(earlier), column.take(later))
        out[here[same]] = True
    return out


def duplicate_rows(table: pa.Table) -> np.ndarray:
    """Rows equal in every column to an earlier row (rows sorted by ``_MERGE_ORDER``).

    Candidates share trace id, span id and start time, so they sit in one run of adjacent rows (a
    numpy comparison of the whole batch). Each row of a run is compared with the row d places before
    it, for d = 1 .. the longest run (2 or 3 with replication): one columnar pass per distance, so a
    copy is found even when a different version of the span sits between the two copies.
    """
    n = table.num_rows
    out = np.zeros(n, bool)
    if n < 2:
        return out
    trace_ids, span_ids = id_matrix(table["trace_id"]), id_matrix(table["span_id"])
    start = table["start_time_unix_nano"].to_numpy()
    same_key = np.zeros(n, bool)
    same_key[1:] = (
        (trace_ids[1:] == trace_ids[:-1]).all(axis=1)
        & (span_ids[1:] == span_ids[:-1]).all(axis=1)
        & (start[1:] == start[:-1])
    )
    if not same_key.any():
        return out
    columns = [table[name].combine_chunks() for name in table.column_names if name not in _KEY_COLUMNS]
    return _run_duplicates(same_key, columns)


def values_equal(x: pa.Array, y: pa.Array) -> np.ndarray:
    """Element-wise "same value" of two arrays of one type, nested types included; null equals null."""
    kind = x.type
    both_null = np.asarray(pc.and_(x.is_null(), y.is_null()))
    null_agree = np.asarray(pc.equal(x.is_null(), y.is_null()))
    if pa.types.is_dictionary(kind):
        return values_equal(x.dictionary_decode(), y.dictionary_decode())
    if pa.types.is_struct(kind):
        out = null_agree.copy()
        for i in range(kind.num_fields):
            out &= values_equal(x.field(i), y.field(i)) | both_null
        return out
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        x_len = pc.fill_null(pc.list_value_length(x), -1).to_numpy()
        y_len = pc.fill_null(pc.list_value_length(y), -1).to_numpy()
        out = x_len == y_len  # -1 on both sides: both null
        pairs = np.flatnonzero(out & (x_len > 0))
        if len(pairs):
            take = pa.array(pairs)
            equal = values_equal(x.take(take).flatten(), y.take(take).flatten())
            mismatches = np.concatenate([[0], np.cumsum(~equal)])
            bounds = np.concatenate([[0], np.cumsum(x_len[pairs])])
            out[pairs] = mismatches[bounds[1:]] == mismatches[bounds[:-1]]
        return out
    if pa.types.is_floating(kind):  # bit patterns: NaN equals NaN, -0.0 differs from 0.0
        width = {16: np.int16, 32: np.int32, 64: np.int64}[kind.bit_width]
        xv = pc.fill_null(x, 0).to_numpy(zero_copy_only=False).view(width)
        yv = pc.fill_null(y, 0).to_numpy(zero_copy_only=False).view(width)
        return ((xv == yv) & null_agree) | both_null
    equal = pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    return equal | both_null


def inputs_attribute_keys(inputs: list[BlockMeta]) -> dict[str, list[str] | None] | None:
    """The output's attribute keys from the inputs' ``meta.json``, or None (the writer collects them)
    when an input lacks them. Exact: a dropped duplicate has the keys of the copy that is kept."""
    out: dict[str, list[str] | None] = {}
    for kind in ("span", "resource"):
        union: set[str] = set()
        for meta in inputs:
            found = meta.span_attribute_keys if kind == "span" else meta.resource_attribute_keys
            if found is None:  # more than MAX_INDEXED_KEYS, or a block written before the field
                return None
            union.update(found)
        out[kind] = sorted(union) if len(union) <= MAX_INDEXED_KEYS else None
    return out


def open_data(backend: Backend, meta: BlockMeta) -> pq.ParquetFile:
    check_format(meta.format, f"block {meta.tenant_id}/{meta.block_id}")
    return pq.ParquetFile(backend.open_input_file(keys.block_key(meta.tenant_id, meta.block_id, keys.DATA)))


def compact(
    backend: Backend,
    inputs: list[BlockMeta],
    cfg: BlockConfig,
    *,
    block_id: str,
    compaction_level: int,
    batch_rows: int,
    emit_rows: int | None = None,
    on_progress=None,
) -> tuple[BlockMeta, MergeStats]:
    """Merge ``inputs`` (blocks of one tenant) into one new block that records them in ``replaces``.

    The new block's ``meta.json`` is written last (``BlockWriter.finish``): it is the commit point.
    ``on_progress(spans_done)`` is called after each merged batch.
    """
    stats = MergeStats()
    files = [open_data(backend, meta) for meta in inputs]
    writer = BlockWriter(
        backend,
        inputs[0].tenant_id,
        cfg,
        compaction_level=compaction_level,
        replaces=sorted(m.block_id for m in inputs),
        block_id=block_id,
        attribute_keys=inputs_attribute_keys(inputs),
    )
    try:
        batches = [f.iter_batches(batch_size=batch_rows, use_threads=False) for f in files]
        for table in merge_sorted_inputs(batches, batch_rows, stats, emit_rows):
            writer.add_rows(table)
            if on_progress is not None:
                on_progress(stats.spans_in)
        return writer.finish(), stats
    except BaseException:
        writer.abort()
        raise
    finally:
        for f in files:
            f.close()
