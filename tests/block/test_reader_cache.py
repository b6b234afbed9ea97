"""Block readers keep their parsed Parquet footer; a process reading many blocks bounds them in bytes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import REGISTRY

from tracelake.backend import open_backend
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1.create import write_block
from tracelake.encoding.v1.find_trace import PARSED_FOOTER_BYTES_PER_ROW_GROUP
from tracelake.synth import SynthConfig, generate_request_bytes

TENANT = "single-tenant"


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _blocks(db: TraceDB, count: int) -> list[tuple[object, bytes, int]]:
    """``count`` blocks of 40 traces in row groups of ~20 spans: (meta, a trace id, its span count)."""
    out = []
    for seed in range(count):
        payloads = generate_request_bytes(SynthConfig(traces=40, seed=100 + seed))
        spans = pa.concat_tables([decode_otlp(p).table for p in payloads])
        meta = write_block(db.backend, TENANT, spans, BlockConfig(parquet_row_group_size_spans=20))
        trace_id = spans["trace_id"][0].as_py()
        out.append((meta, trace_id, pc.sum(pc.equal(spans["trace_id"], trace_id)).as_py()))
    return out


def test_parsed_footers_stay_within_their_budget_and_evicted_blocks_are_read_again(tmp_path: Path) -> None:
    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path)))
    writer = TraceDB(open_backend(cfg), cfg)
    blocks = _blocks(writer, 6)
    writer.close()
    one_block = max(len(m.row_groups) for m, _, _ in blocks) * PARSED_FOOTER_BYTES_PER_ROW_GROUP
    budget = 2 * one_block
    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path)), footer_cache_max_bytes=budget)
    db = TraceDB(open_backend(cfg), cfg)
    evicted_before = _metric("tracelake_footer_cache_evictions_total")
    try:
        for _ in range(2):  # the second round reads every block again after it was dropped
            for meta, trace_id, span_count in blocks:
                found = db.reader(meta).find_trace(trace_id)
                assert found is not None and found.num_rows == span_count
                assert 0 < db.footer_cache_bytes <= budget
        assert _metric("tracelake_footer_cache_evictions_total") - evicted_before >= 8
        assert _metric("tracelake_footer_cache_bytes") == db.footer_cache_bytes
    finally:
        db.close()


def test_readers_that_never_parsed_a_footer_cost_nothing(tmp_path: Path) -> None:
    """A missing id is answered by the bloom: the reader is kept, its footer never parsed."""
    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path)), footer_cache_max_bytes=1)
    db = TraceDB(open_backend(cfg), cfg)
    try:
        blocks = _blocks(db, 3)
        for meta, _, _ in blocks:
            assert db.reader(meta).find_trace(b"\xff" * 16) is None
        assert db.footer_cache_bytes == 0
        assert all(db.reader(meta) is db.reader(meta) for meta, _, _ in blocks)
    finally:
        db.close()


def test_the_estimate_is_per_row_group(tmp_path: Path) -> None:
    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path)))
    db = TraceDB(open_backend(cfg), cfg)
    try:
        ((meta, trace_id, _),) = _blocks(db, 1)
        reader = db.reader(meta)
        assert reader.footer_bytes == 0
        assert reader.find_trace(trace_id) is not None
        assert reader.footer_bytes == len(meta.row_groups) * PARSED_FOOTER_BYTES_PER_ROW_GROUP > 0
        assert isinstance(reader.parquet().metadata, pa._parquet.FileMetaData)
    finally:
        db.close()
