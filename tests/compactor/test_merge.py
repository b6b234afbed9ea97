"""The streaming merge on both backends: every span once, traces whole, duplicates dropped, parents
resolved across inputs, outputs readable by plain pyarrow, lookups unchanged, memory bounded."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.bitwise import bits
from tests.compactor.helpers import TENANT, span_keys, synth_spans, write_split_blocks
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.config import BlockConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1.compactor import (
    MergeStats,
    compact,
    duplicate_rows,
    merge_order,
    merge_sorted_inputs,
    rows_equal,
)
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.encoding.v1.layout import sort_spans, to_block_rows
from tracelake.model.schema import ATTRIBUTE_TYPE

CFG = BlockConfig(parquet_row_group_size_spans=300)


@pytest.fixture(scope="module")
def spans() -> pa.Table:
    return synth_spans(traces=400, seed=3)


def _parents(table: pa.Table) -> dict:
    return dict(
        zip(
            zip(table["trace_id"].to_pylist(), table["span_id"].to_pylist(), strict=True),
            table["parent_span_id"].to_pylist(),
            strict=True,
        )
    )


def test_merge_keeps_every_span_once(
    backend: Backend, storage_config: TraceStorageConfig, spans: pa.Table
) -> None:
    inputs = write_split_blocks(backend, spans, blocks=4, replicated=2, cfg=CFG)
    db = TraceDB(backend, storage_config)
    sample = spans["trace_id"].unique().to_pylist()[::37]
    before = {tid: span_keys(db.find_trace(TENANT, tid)) for tid in sample}

    out, stats = compact(backend, inputs, CFG, block_id="merged", compaction_level=1, batch_rows=128)

    merged = pa.concat_tables(list(BlockReader(backend, out).iter_spans()))
    assert span_keys(merged) == span_keys(spans)  # each span exactly once
    assert stats.duplicates == sum(m.total_spans for m in inputs[4:]) == stats.spans_in - stats.spans_out
    assert out.total_spans == spans.num_rows and out.total_traces == len(spans["trace_id"].unique())
    assert sorted(out.replaces) == sorted(m.block_id for m in inputs)
    assert out.span_attribute_keys == sorted(set().union(*(m.span_attribute_keys for m in inputs)))
    assert out.resource_attribute_keys == sorted(set().union(*(m.resource_attribute_keys for m in inputs)))
    assert out.compaction_level == 1
    assert stats.traces_combined > 0  # traces were split between inputs
    assert _parents(merged) == _parents(spans)  # parent_index recomputed for the merged traces
    assert merged.equals(sort_spans(merged))  # in block order: trace id, then start time
    # Row groups hold disjoint, increasing trace-id ranges: a trace never spans two of them.
    bounds = [(g.min_id, g.max_id) for g in out.row_groups]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(bounds))

    # A third-party reader sees the same rows.
    raw = pq.read_table(backend.open_input_file(keys.block_key(TENANT, "merged", keys.DATA)))
    assert raw.num_rows == spans.num_rows

    # Trace by id after the inputs were replaced: the same spans, from the one new block.
    for block in inputs:
        backend.delete(keys.block_key(TENANT, block.block_id, keys.META))
    after = TraceDB(backend, storage_config)
    for tid, expected in before.items():
        found = after.find_trace(TENANT, tid)
        assert expected.keys() == span_keys(found).keys()
        assert set(span_keys(found).values()) == {1}


def test_merge_order_is_trace_start_span_then_end_as_bytes() -> None:
    rows = [  # (trace id, start, span id, duration): two inputs' rows, each input in block order
        (b"\x01" + bytes(15), 7, b"\xff" * 8, 1),
        (b"\x01" + bytes(15), 9, b"\x02" * 8, 1),
        (b"\x80" + bytes(15), 5, b"\x01" * 8, 1),  # above 0x01 as bytes (below it as a signed int)
        (b"\x01" + bytes(15), 7, b"\x7f" * 8, 3),
        (b"\x01" + bytes(15), 7, b"\x7f" * 8, 2),  # the same span id and start: the earlier end first
        (b"\x01" + bytes(15), 7, b"\xff" * 8, 1),  # an exact copy of the first row keeps its place
    ]
    columns = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "trace_id": pa.array(columns[0], pa.binary(16)),
            "start_time_unix_nano": pa.array(columns[1], pa.uint64()),
            "span_id": pa.array(columns[2], pa.binary(8)),
            "duration_nano": pa.array(columns[3], pa.uint64()),
        }
    )
    chunked = pa.concat_tables([table.slice(0, 3), table.slice(3)])

    order = merge_order(chunked).tolist()

    assert order == sorted(range(len(rows)), key=lambda i: (*rows[i][:3], rows[i][1] + rows[i][3]))
    assert order == [4, 3, 0, 5, 1, 2]


def test_same_span_id_with_different_content_is_kept(backend: Backend, spans: pa.Table) -> None:
    first_trace = spans.filter(pc.equal(spans["trace_id"], spans["trace_id"][0]))
    changed = first_trace.set_column(
        first_trace.schema.get_field_index("name"),
        first_trace.schema.field("name"),
        pa.array([n + "-retried" for n in first_trace["name"].to_pylist()]),
    )
    a = write_split_blocks(backend, first_trace, blocks=1, cfg=CFG)
    b = write_split_blocks(backend, changed, blocks=1, cfg=CFG)
    c = write_split_blocks(backend, first_trace, blocks=1, cfg=CFG)
    out, stats = compact(backend, a + b + c, CFG, block_id="m2", compaction_level=1, batch_rows=64)
    assert out.total_spans == 2 * first_trace.num_rows  # the exact copy once, the changed one kept
    assert stats.duplicates == first_trace.num_rows


def test_copies_that_differ_only_in_their_parent_are_both_kept(backend: Backend, spans: pa.Table) -> None:
    trace = spans.filter(pc.equal(spans["trace_id"], spans["trace_id"][0]))
    parents = trace["parent_span_id"].to_pylist()
    children = [i for i, parent in enumerate(parents) if parent]
    assert len(children) >= 2
    first_span = trace["span_id"][0].as_py()
    changed = list(parents)
    changed[children[0]] = b"\xee" * 8  # a parent outside the trace: stored as the id itself
    changed[children[1]] = first_span if parents[children[1]] != first_span else b"\xdd" * 8
    other = trace.set_column(
        trace.schema.get_field_index("parent_span_id"),
        trace.schema.field("parent_span_id"),
        pa.array(changed, trace.schema.field("parent_span_id").type),
    )
    a = write_split_blocks(backend, trace, blocks=1, cfg=CFG)
    b = write_split_blocks(backend, other, blocks=1, cfg=CFG)
    c = write_split_blocks(backend, trace, blocks=1, cfg=CFG)

    out, stats = compact(backend, a + b + c, CFG, block_id="m3", compaction_level=1, batch_rows=64)

    merged = pa.concat_tables(list(BlockReader(backend, out).iter_spans()))
    assert out.total_spans == trace.num_rows + 2  # the two re-parented copies stay beside the originals
    assert stats.duplicates == 2 * trace.num_rows - 2
    kept = set(zip(merged["span_id"].to_pylist(), merged["parent_span_id"].to_pylist(), strict=True))
    assert (trace["span_id"][children[0]].as_py(), b"\xee" * 8) in kept
    assert (trace["span_id"][children[0]].as_py(), parents[children[0]]) in kept


def test_duplicate_rows_compares_nested_columns(spans: pa.Table) -> None:
    rows = sort_spans(spans.slice(0, 50))
    doubled = sort_spans(pa.concat_tables([rows, rows]))
    assert int(duplicate_rows(doubled).sum()) == 50
    attrs = doubled["attributes"].to_pylist()
    target = next(i for i, a in enumerate(attrs) if a)
    attrs[target] = [dict(attrs[target][0], int=attrs[target][0]["int"] + 1), *attrs[target][1:]]
    edited = doubled.set_column(
        doubled.schema.get_field_index("attributes"),
        doubled.schema.field("attributes"),
        pa.array(attrs, doubled.schema.field("attributes").type),
    )
    assert int(duplicate_rows(edited).sum()) == 49  # one attribute value differs: both copies stay


def test_merge_holds_at_most_two_batches_per_input(spans: pa.Table) -> None:
    """Memory is bounded by the batch size: rows read but not yet emitted stay under two batches per
    input (plus one trace), however large the inputs."""
    rows = to_block_rows(sort_spans(spans))
    trace_ids = rows["trace_id"].to_pylist()
    # Three inputs of about a third of the rows each, cut at trace boundaries.
    cuts = [0]
    for third in (rows.num_rows // 3, 2 * rows.num_rows // 3):
        cuts.append(next(j for j in range(third, len(trace_ids)) if trace_ids[j] != trace_ids[j - 1]))
    cuts.append(rows.num_rows)
    parts = [rows.slice(a, b - a) for a, b in itertools.pairwise(cuts)]
    largest_trace = max(pc.value_counts(rows["trace_id"]).field("counts").to_pylist())
    batch, pulled = 50, [0]

    def batches(table: pa.Table):
        for b in table.to_batches(max_chunksize=batch):
            pulled[0] += b.num_rows
            yield b

    emitted = 0
    stats = MergeStats()
    for table in merge_sorted_inputs([batches(p) for p in parts], batch, stats):
        emitted += table.num_rows
        assert pulled[0] - emitted <= len(parts) * (2 * batch + largest_trace)
    assert emitted == rows.num_rows == stats.spans_out


def test_rows_equal_matches_python_equality() -> None:
    """The numpy comparison of rows (offsets, validity, dictionary indices, values) agrees with
    comparing the Python values, on sliced arrays with nulls, NaN, -0.0, repeated dictionary values
    and nested lists of structs."""
    rng = np.random.default_rng(0)
    item = pa.field("item", ATTRIBUTE_TYPE, nullable=False)

    def attributes():
        if rng.random() < 0.2:
            return None
        return [
            dict(
                key=str(rng.integers(0, 3)),
                type=int(rng.integers(0, 2)),
                str=["", "a", "bb"][rng.integers(0, 3)],
                int=int(rng.integers(0, 2)),
                double=[0.0, -0.0, float("nan"), 1.5][rng.integers(0, 4)],
                bytes=b"x" * int(rng.integers(0, 2)),
            )
            for _ in range(rng.integers(0, 3))
        ]

    def maybe(values):
        return None if rng.random() < 0.2 else values[rng.integers(0, len(values))]

    n = 40
    for _ in range(50):
        columns = [
            pa.array([maybe(["", "a", "ab", "b"]) for _ in range(n)], pa.string()),
            pa.array([maybe([0, 1, 2]) for _ in range(n)], pa.int64()),
            pa.array([[0.0, -0.0, float("nan"), 2.0][rng.integers(0, 4)] for _ in range(n)], pa.float64()),
            pa.array([maybe(["x", "y", "x"]) for _ in range(n)], pa.string()).dictionary_encode(),
            pa.DictionaryArray.from_arrays(  # a dictionary holding "x" twice
                pa.array(rng.integers(0, 3, n), pa.int32()), pa.array(["x", "y", "x"])
            ),
            pa.array([bytes([int(rng.integers(0, 2))]) * 4 for _ in range(n)], pa.binary(4)),
            pa.array([attributes() for _ in range(n)], pa.list_(item)),
            pa.array([bool(rng.integers(0, 2)) for _ in range(n)]),
        ]
        offset = int(rng.integers(0, 5))
        for column in columns:
            column = column.slice(offset, n - offset - 3)
            a, b = rng.integers(0, len(column), 60), rng.integers(0, len(column), 60)
            values = [bits(v) for v in column.to_pylist()]
            expected = [values[i] == values[j] for i, j in zip(a, b, strict=True)]
            assert rows_equal(column, a, b).tolist() == expected, column.type
