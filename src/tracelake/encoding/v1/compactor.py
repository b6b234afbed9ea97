"""Compact blocks of format tl1: a streaming k-way merge by trace id over the inputs' rows.

Each input is read in record batches of a few thousand rows (``iter_batches``), never as a whole block,
so memory is about ``inputs x batch_rows`` spans whatever the block sizes. Inputs are sorted by trace
id, so at any moment every row whose trace id is below the smallest "last id buffered" of all inputs is
final: no later batch of any input can hold more of those traces. Those rows are taken from every
buffer, merged, deduplicated and handed to a ``BlockWriter``; the buffers keep the rest.

Spans travel as the span table (``from_block_rows``), so ``parent_index`` is recomputed by the writer
for the merged trace: a parent that lived in another input block resolves again.
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
from tracelake.encoding.v1.layout import from_block_rows
from tracelake.model.ids import id_matrix, trace_starts

# Sort keys of a merged batch: trace id then start time (the block order); span id and end time break
# ties so that the copies of a span, which share all four, end up next to each other.
_MERGE_ORDER = [
    ("trace_id", "ascending"),
    ("start_time_unix_nano", "ascending"),
    ("span_id", "ascending"),
    ("end_time_unix_nano", "ascending"),
]
_KEY_COLUMNS = {"trace_id", "span_id", "start_time_unix_nano"}


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
    """Whole traces in increasing trace-id order (SPAN_SCHEMA tables, deduplicated) from the inputs'
    ``data.parquet`` batches, each input sorted by trace id.

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
                parts.append(from_block_rows(cursor.take(n)))
        if parts:
            yield _combine(parts, stats)


def _combine(parts: list[pa.Table], stats: MergeStats) -> pa.Table:
    """Spans of whole traces from several inputs -> one table in block order, exact duplicates once."""
    table = pa.concat_tables(parts).unify_dictionaries().combine_chunks() if len(parts) > 1 else parts[0]
    table = table.take(pc.sort_indices(table, _MERGE_ORDER))
    duplicate = duplicate_rows(table)
    dropped = int(duplicate.sum())
    if dropped:
        table = table.filter(pa.array(~duplicate))
    traces = int(trace_starts(id_matrix(table["trace_id"])).sum())
    if len(parts) > 1:
        per_input = sum(int(trace_starts(id_matrix(p["trace_id"])).sum()) for p in parts)
        stats.traces_combined += per_input - traces
    stats.spans_in += table.num_rows + dropped
    stats.spans_out += table.num_rows
    stats.duplicates += dropped
    stats.traces_out += traces
    return table


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
    rows = np.arange(n)
    run_position = rows - np.maximum.accumulate(np.where(same_key, 0, rows))
    columns = [table[name].combine_chunks() for name in table.column_names if name not in _KEY_COLUMNS]
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
    )
    try:
        batches = [f.iter_batches(batch_size=batch_rows, use_threads=False) for f in files]
        for table in merge_sorted_inputs(batches, batch_rows, stats, emit_rows):
            writer.add(table)
            if on_progress is not None:
                on_progress(stats.spans_in)
        return writer.finish(), stats
    except BaseException:
        writer.abort()
        raise
    finally:
        for f in files:
            f.close()
