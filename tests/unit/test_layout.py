"""The tl1 row layout: parents as indexes, durations, row-group cuts, and the per-trace summary."""

from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.codec.decode import decode_otlp
from tracelake.codec.native import pure_python_forced
from tracelake.encoding.v1 import layout
from tracelake.encoding.v1.layout import from_block_rows, row_group_cuts, sort_spans, to_block_rows
from tracelake.encoding.v1.summary import summarize

T1, T2 = b"\x01" * 16, b"\x02" * 16


def _request(spans: list[dict]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "api"
    ss = rs.scope_spans.add()
    for s in spans:
        ss.spans.add(**s)
    return req.SerializeToString()


def _spans() -> pa.Table:
    return decode_otlp(
        _request(
            [
                dict(
                    trace_id=T2,
                    span_id=b"b" * 8,
                    parent_span_id=b"a" * 8,
                    start_time_unix_nano=20,
                    end_time_unix_nano=30,
                ),
                dict(
                    trace_id=T2, span_id=b"a" * 8, start_time_unix_nano=10, end_time_unix_nano=50, name="root"
                ),
                # parent outside the trace, and end before start: both must survive exactly
                dict(
                    trace_id=T1,
                    span_id=b"c" * 8,
                    parent_span_id=b"z" * 8,
                    start_time_unix_nano=9,
                    end_time_unix_nano=3,
                ),
                dict(
                    trace_id=T1,
                    span_id=b"d" * 8,
                    parent_span_id=b"c" * 8,
                    start_time_unix_nano=10,
                    end_time_unix_nano=11,
                    status={"code": 2},
                ),
            ]
        )
    ).table


def test_parents_become_indexes_and_come_back() -> None:
    ordered = sort_spans(_spans())
    rows = to_block_rows(ordered)
    assert rows["parent_index"].to_pylist() == [None, 0, None, 0]
    assert rows["parent_span_id"].to_pylist() == [b"z" * 8, None, None, None]
    assert rows["duration_nano"].to_pylist()[0] == (3 - 9) % 2**64
    back = from_block_rows(rows)
    assert back.equals(ordered.cast(back.schema))


def test_rows_are_sorted_by_trace_then_start() -> None:
    ordered = sort_spans(_spans())
    assert ordered["span_id"].to_pylist() == [b"c" * 8, b"d" * 8, b"a" * 8, b"b" * 8]


def test_summary_per_trace() -> None:
    summary = summarize(sort_spans(_spans())).to_pylist()
    assert [s["trace_id"] for s in summary] == [T1, T2]
    t1, t2 = summary
    assert (t2["root_span_name"], t2["root_service_name"], t2["span_count"]) == ("root", "api", 2)
    assert (t2["start_time_unix_nano"], t2["duration_nano"]) == (10, 40)
    assert t2["first_row"] == 2 and t1["first_row"] == 0
    assert t1["error_count"] == 1
    assert t1["service_stats"] == [{"service": "api", "span_count": 2, "error_count": 1}]


@settings(max_examples=200)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=60),
    target=st.integers(1, 50),
)
def test_row_group_cuts_cover_everything_and_never_split_a_trace(sizes: list[int], target: int) -> None:
    new_trace = np.zeros(sum(sizes), bool)
    new_trace[np.cumsum([0, *sizes[:-1]])] = True
    cuts = row_group_cuts(new_trace, target)
    assert cuts[0] == 0 and cuts[-1] == len(new_trace)
    assert all(a < b for a, b in itertools.pairwise(cuts))
    assert all(new_trace[c] for c in cuts[:-1])  # every group starts a trace
    for a, b in itertools.pairwise(cuts):  # a group exceeds the target only for one big trace
        assert b - a <= target or new_trace[a + 1 : b].sum() == 0


@st.composite
def _traces(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by trace: traces of 1-80 spans (past the compiled kernel's scan limit of 32), span
    ids drawn from a small pool so ids repeat within and across traces, parents that are in the
    trace, in another trace only, or nowhere."""
    sizes = draw(st.lists(st.integers(1, 80), min_size=1, max_size=6))
    n = sum(sizes)
    pool = draw(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=40))
    pick = st.integers(0, len(pool) - 1)
    span_ids = np.frombuffer(b"".join(pool[draw(pick)] for _ in range(n)), np.uint8).reshape(n, 8)
    parents = [pool[draw(pick)] if draw(st.booleans()) else b"\xaa" * 8 for _ in range(n)]
    parent_ids = np.frombuffer(b"".join(parents), np.uint8).reshape(n, 8)
    has_parent = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    trace_ids = np.repeat(np.arange(len(sizes), dtype=">u8"), sizes).view(np.uint8).reshape(n, 8)
    trace_ids = np.concatenate([trace_ids, trace_ids], axis=1)  # 16-byte ids, sorted
    new_trace = np.zeros(n, bool)
    new_trace[np.cumsum([0, *sizes[:-1]])] = True
    return trace_ids, span_ids, parent_ids, has_parent, new_trace


@settings(max_examples=150)
@given(rows=_traces())
def test_compiled_parent_rows_match_the_numpy_fallback_and_a_plain_search(rows) -> None:
    trace_ids, span_ids, parent_ids, has_parent, new_trace = rows
    starts = [*np.flatnonzero(new_trace), len(new_trace)]
    expected = np.full(len(trace_ids), -1, np.int32)
    for begin, end in itertools.pairwise(starts):  # the first row of the trace with the parent's id
        ids = [bytes(r) for r in span_ids[begin:end]]
        for i in range(begin, end):
            if has_parent[i] and bytes(parent_ids[i]) in ids:
                expected[i] = ids.index(bytes(parent_ids[i]))
    with mock.patch.object(layout, "_PARENTS", None):  # the numpy fallback
        assert layout.parent_rows(*rows).tolist() == expected.tolist()
    if not pure_python_forced():
        assert layout._PARENTS is not None  # built by `pip install -e .`, as in CI
        assert layout.parent_rows(*rows).tolist() == expected.tolist()
