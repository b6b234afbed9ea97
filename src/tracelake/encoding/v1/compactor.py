"""Compact blocks: a streaming k-way merge by trace id over the inputs' rows (tl1 inputs give tl2).

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
from tracelake.block.meta import FORMAT_V1, BlockMeta, check_format
from tracelake.codec.attributes_wire import pack_attributes
from tracelake.config import BlockConfig
from tracelake.encoding.v1.create import BlockWriter
from tracelake.encoding.v1.layout import BLOCK_SCHEMA, MAX_INDEXED_KEYS, parent_ids_of_rows, resolve_parents
from tracelake.errors import BackendError, BlockFormatError, BlockReadError
from tracelake.model.ids import id_matrix, id_words, trace_starts
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
            yield merge_step(parts, stats)


def merge_order(rows: pa.Table) -> np.ndarray:
    """Positions of block rows in ``_MERGE_ORDER``. Arrow's multi-key sort merges the inputs' already
    sorted chunks: 0.08 µs per span, against 0.17-0.26 for numpy's ``lexsort`` on the keys as uint64
    columns (a 10-input job's steps replayed in process)."""
    start = rows["start_time_unix_nano"]
    keys = pa.table(
        {
            "trace_id": rows["trace_id"],
            "start_time_unix_nano": start,
            "span_id": rows["span_id"],
            "end_time_unix_nano": pc.add(start, rows["duration_nano"]),  # uint64 wraps back: the end
        }
    )
    return pc.sort_indices(keys, sort_keys=_MERGE_ORDER).to_numpy()


def merge_step(parts: list[pa.Table], stats: MergeStats) -> pa.Table:
    """Block rows of whole traces from several inputs (each sorted by trace id and start) -> block rows
    in block order, exact duplicates once, ``parent_index`` recomputed within the merged traces.

    The order (``merge_order``) is applied with one ``take``, skipped when the rows are already in
    order.
    """
    table = pa.concat_tables(parts).unify_dictionaries() if len(parts) > 1 else parts[0]
    n = table.num_rows
    trace_ids = id_matrix(table["trace_id"])
    # Traces of an input: a trace id change or the start of the next input's rows.
    new_trace = trace_starts(trace_ids)
    new_trace[np.cumsum([0] + [p.num_rows for p in parts[:-1]])] = True
    parent_ids, has_parent = parent_ids_of_rows(table, new_trace)
    order = merge_order(table)
    start = table["start_time_unix_nano"].to_numpy()
    span_ids = id_words(id_matrix(table["span_id"])).ravel()
    same_key = np.zeros(n, bool)
    same_key[1:] = (
        (trace_ids[order[1:]] == trace_ids[order[:-1]]).all(axis=1)
        & (span_ids[order[1:]] == span_ids[order[:-1]])
        & (start[order[1:]] == start[order[:-1]])
    )
    in_order = bool((order[1:] > order[:-1]).all())
    duplicate = _duplicates(table, order, same_key, parent_ids, has_parent)
    keep = order[~duplicate] if duplicate.any() else order
    dropped = n - len(keep)
    if not in_order or dropped:
        table = table.take(pa.array(keep))
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
    table: pa.Table, order: np.ndarray, same_key: np.ndarray, parent_ids: np.ndarray, has_parent: np.ndarray
) -> np.ndarray:
    """``duplicate_rows`` for block rows: a mask over ``order`` (the rows in merge order;
    ``same_key``: the row has the previous one's trace id, span id and start). Only the rows of runs
    are taken and compared (a tenth to a fifth of a step's rows with replication), not the whole step
    combined; the parent is compared as the parent span id."""
    n = len(order)
    out = np.zeros(n, bool)
    if not same_key.any():
        return out
    in_run = same_key.copy()  # only the rows of runs take part
    in_run[:-1] |= same_key[1:]
    rows = order[in_run]
    skip = _KEY_COLUMNS | _PARENT_COLUMNS
    candidates = table.select([name for name in table.column_names if name not in skip]).take(pa.array(rows))
    parent = pa.Array.from_buffers(
        pa.binary(SPAN_ID_BYTES),
        len(rows),
        [pa.array(has_parent[rows]).buffers()[1], pa.py_buffer(np.ascontiguousarray(parent_ids[rows]))],
    )
    columns = [column.combine_chunks() for column in candidates.columns] + [parent]
    columns.sort(key=_compare_cost)
    out[in_run] = _run_duplicates(same_key[in_run], columns)
    return out


def _compare_cost(column: pa.Array) -> int:
    """Cheap comparisons first: most candidates are exact copies, but a differing version of a span
    usually differs in a small column (times, status, name)."""
    kind = column.type
    if pa.types.is_nested(kind):
        return 2
    if pa.types.is_binary(kind) or pa.types.is_string(kind):
        return 1
    return 0


def _run_duplicates(same_key: np.ndarray, columns: list[pa.Array]) -> np.ndarray:
    """Rows equal in every one of ``columns`` to an earlier row of their run (``same_key``: the row
    continues the previous row's run)."""
    n = len(same_key)
    out = np.zeros(n, bool)
    position = np.arange(n)
    run_position = position - np.maximum.accumulate(np.where(same_key, 0, position))
    for distance in range(1, int(run_position.max()) + 1):
        here = np.flatnonzero((run_position >= distance) & ~out)
        same = np.ones(len(here), bool)
        for column in columns:
            alive = np.flatnonzero(same)
            if not len(alive):
                break
            same[alive] = rows_equal(column, here[alive] - distance, here[alive])
        out[here[same]] = True
    return out


def rows_equal(column: pa.Array, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``column[a] == column[b]`` element-wise, for any type (nested lists and structs included; floats
    by bit pattern; null equals null). Validity, list offsets, dictionary indices and fixed-width
    values are compared in numpy on the column's buffers; only variable-width values are taken."""
    if column.null_count:
        valid = np.asarray(column.is_valid())
        va, vb = valid[a], valid[b]
        out = va == vb
        both = np.flatnonzero(out & va)
        out[both] = _valid_rows_equal(column, a[both], b[both])
        return out
    return _valid_rows_equal(column, a, b)


def _valid_rows_equal(column: pa.Array, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    kind = column.type
    if not len(a):
        return np.ones(0, bool)
    if pa.types.is_dictionary(kind):
        indices = column.indices  # a null index only at a null row, which is not compared here
        indices = (pc.fill_null(indices, 0) if indices.null_count else indices).to_numpy()
        return rows_equal(column.dictionary, indices[a], indices[b])
    if pa.types.is_struct(kind):
        out = np.ones(len(a), bool)
        for i in range(kind.num_fields):
            alive = np.flatnonzero(out)
            if not len(alive):
                break
            out[alive] = rows_equal(column.field(i), a[alive], b[alive])
        return out
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        offsets = column.offsets.to_numpy()
        return _ragged_equal(offsets, a, b, lambda x, y: rows_equal(column.values, x, y))
    if pa.types.is_fixed_size_binary(kind):
        values = np.ascontiguousarray(id_matrix(column)).view(f"V{kind.byte_width}").ravel()
    elif pa.types.is_floating(kind):  # bit patterns: NaN equals NaN, -0.0 differs from 0.0
        values = column.to_numpy(zero_copy_only=False).view(f"i{kind.bit_width // 8}")
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        values = column.to_numpy(zero_copy_only=False)
    else:  # strings and binaries (a memcmp each), anything else: Arrow compares the taken values
        return pc.equal(column.take(pa.array(a)), column.take(pa.array(b))).to_numpy(zero_copy_only=False)
    return values[a] == values[b]


def _ragged_equal(offsets: np.ndarray, a: np.ndarray, b: np.ndarray, equal) -> np.ndarray:
    """Equality of variable-length values (``offsets`` into child elements) of rows ``a`` and ``b``:
    same length and ``equal(child positions of a, of b)`` for every element."""
    start_a, start_b = offsets[a].astype(np.int64), offsets[b].astype(np.int64)
    length = offsets[a + 1] - start_a
    out = length == offsets[b + 1] - start_b
    pairs = np.flatnonzero(out & (length > 0))
    if not len(pairs):
        return out
    length = length[pairs]
    segment = np.repeat(np.arange(len(pairs)), length)
    within = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    same = equal(start_a[pairs][segment] + within, start_b[pairs][segment] + within)
    out[pairs] = np.bincount(segment, weights=~same, minlength=len(pairs)) == 0
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


# What reading a damaged or vanished input raises: Arrow's I/O errors are OSError, its decoding errors
# ArrowException (thrift, magic bytes); our own for an unknown format or a missing object. Running out
# of memory (ArrowMemoryError is also a MemoryError) is not the block's fault and is not caught.
_READ_ERRORS = (OSError, pa.ArrowException, BlockFormatError, BackendError)


def _unreadable(meta: BlockMeta, exc: BaseException) -> BlockReadError:
    return BlockReadError(
        f"block {meta.tenant_id}/{meta.block_id} cannot be read: {exc}",
        tenant=meta.tenant_id,
        block_id=meta.block_id,
    )


def open_data(backend: Backend, meta: BlockMeta) -> pq.ParquetFile:
    """An input's ``data.parquet`` (its footer parsed); ``BlockReadError`` if it cannot be opened."""
    try:
        check_format(meta.format, f"block {meta.tenant_id}/{meta.block_id}")
        return pq.ParquetFile(
            backend.open_scan_file(keys.block_key(meta.tenant_id, meta.block_id, keys.DATA)),
            # No pre-buffering: it reads every row group's column chunks of the file into memory at
            # once (the whole input: 49 MiB more of Arrow's pool in a 10-input merge of 1M spans).
            pre_buffer=False,
        )
    except MemoryError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(meta, exc) from exc


def input_batches(data: pq.ParquetFile, meta: BlockMeta, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """An input's rows as the writer takes them: a tl1 block's attribute lists become wire bytes, so
    compacting tl1 blocks upgrades them. A read that fails raises ``BlockReadError`` naming the block,
    so the compactor can leave that block aside instead of failing the same job forever."""
    try:
        for batch in data.iter_batches(batch_size=batch_rows, use_threads=False):
            if meta.format == FORMAT_V1:
                table = pa.Table.from_batches([batch])
                packed = pack_attributes(table["attributes"], table)
                index = batch.schema.get_field_index("attributes")
                batch = batch.set_column(index, BLOCK_SCHEMA.field("attributes"), packed)
            yield batch
    except MemoryError:
        raise
    except _READ_ERRORS as exc:
        raise _unreadable(meta, exc) from exc


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
    files: list[pq.ParquetFile] = []
    try:
        for meta in inputs:
            files.append(open_data(backend, meta))
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
            batches = [input_batches(f, meta, batch_rows) for f, meta in zip(files, inputs, strict=True)]
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
