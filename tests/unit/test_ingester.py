"""The ingester in-process on real files: traces readable by id at every stage, idle cuts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.backend import open_backend
from tracelake.codec.validate import prepare_spans
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.ingester.ingester import Ingester
from tracelake.ingester.instance import TenantInstance
from tracelake.ingester.limits import Overrides


def _request(trace_ids: list[bytes], first_span: int = 1) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    now = time.time_ns()
    for i, trace_id in enumerate(trace_ids):
        span_id = (first_span + i).to_bytes(8, "big")
        spans.add(
            trace_id=trace_id, span_id=span_id, name="s", start_time_unix_nano=now, end_time_unix_nano=now
        )
    return request.SerializeToString()


@pytest.fixture
def ingester(tmp_path: Path):
    cfg = Config.model_validate(
        {
            "storage": {
                "trace": {"local": {"path": str(tmp_path / "data")}, "wal": {"path": str(tmp_path / "wal")}}
            },
            "ingester": {
                "trace_idle_period": "1h",
                "max_block_duration": "1h",
                "complete_block_timeout": "1h",
            },
        }
    )
    db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
    ing = Ingester(cfg, db, Overrides(cfg.overrides))
    ing.replay()
    yield ing
    ing.shutdown(5)
    db.close()


def _push(ing: Ingester, payload: bytes) -> None:
    now = time.time_ns()
    ing.push("t", prepare_spans(payload, now, ing.rules("t")), payload, now)


def _found(ing: Ingester, trace_id: bytes) -> int:
    return sum(t.num_rows for t in ing.find_trace("t", trace_id))


def test_a_trace_is_readable_by_id_at_every_stage(ingester: Ingester) -> None:
    a, b = b"\x0a" * 16, b"\x0b" * 16
    _push(ingester, _request([a, a, b]))
    assert (_found(ingester, a), _found(ingester, b)) == (2, 1)  # live
    ingester.instance("t").cut_idle(time.monotonic(), 0.0, everything=True)
    assert _found(ingester, a) == 2  # head block
    head = ingester.instance("t").take_head(time.monotonic(), 3600, 1 << 40, force=True)
    assert head is not None and _found(ingester, a) == 2  # being flushed
    assert ingester._flush(head)
    assert _found(ingester, a) == 2  # completed block, still served by the ingester
    assert ingester.db.find_trace("t", a).num_rows == 2  # and in the backend
    ingester._expire_completed(time.monotonic() + 7200)
    assert _found(ingester, a) == 0  # past complete_block_timeout: the querier reads the backend
    assert ingester.wal.segments() == [ingester.wal.current_segment]  # flushed segments are gone


def test_idle_cuts_split_a_batch_that_mixes_idle_and_live_traces() -> None:
    inst = TenantInstance("t")
    a, b, c = b"\x0a" * 16, b"\x0b" * 16, b"\x0c" * 16
    first = prepare_spans(_request([a, b]), time.time_ns(), _no_rules()).table
    second = prepare_spans(_request([b, c], first_span=10), time.time_ns(), _no_rules()).table
    inst.append(first, 1, 100, now=0.0, max_bytes_per_trace=0)
    inst.append(second, 2, 100, now=10.0, max_bytes_per_trace=0)  # b is active again at t=10
    assert inst.cut_idle(now=11.0, idle_period=5.0) == 1  # only a is idle
    assert [t.num_rows for t in inst.find_trace(a)] == [1]
    assert inst.head.batches[0].table["trace_id"].to_pylist() == [a]
    assert sorted(inst.last_seen) == [b, c]
    assert inst.min_segment() == 1  # the remainder of batch 1 still needs segment 1
    assert sum(b.table.num_rows for b in inst.live) == 3
    assert inst.cut_idle(now=100.0, idle_period=5.0) == 2
    assert inst.live == [] and sum(b.table.num_rows for b in inst.head.batches) == 4


def _no_rules():
    from tracelake.codec.validate import SpanRules

    return SpanRules(0, 0, 0)


def test_spans_over_max_bytes_per_trace_are_refused() -> None:
    inst = TenantInstance("t")
    a = b"\x0a" * 16
    table = prepare_spans(_request([a] * 10), time.time_ns(), _no_rules()).table
    kept, refused = inst.append(table, 1, payload_bytes=1000, now=0.0, max_bytes_per_trace=500)
    assert (kept.num_rows, refused) == (0, 10)
    kept, refused = inst.append(table.slice(0, 4), 1, payload_bytes=400, now=0.0, max_bytes_per_trace=500)
    assert (kept.num_rows, refused) == (4, 0)


def test_pushes_are_refused_while_block_writing_is_behind(ingester: Ingester) -> None:
    from tracelake.push import PushError

    a = b"\x0a" * 16
    _push(ingester, _request([a]))
    ingester.instance("t").cut_idle(time.monotonic(), 0.0, everything=True)
    head = ingester.instance("t").take_head(time.monotonic(), 3600, 1 << 40, force=True)
    assert head is not None  # now "being flushed", holding memory
    ingester.max_pending_flush_bytes = head.bytes - 1
    with pytest.raises(PushError) as refused:
        _push(ingester, _request([b"\x0b" * 16], first_span=50))
    assert refused.value.status == 503 and refused.value.retry_after == 1
    assert refused.value.reason == "flush_backpressure"
    assert ingester._flush(head)  # once written, pushes are accepted again
    _push(ingester, _request([b"\x0c" * 16], first_span=60))
