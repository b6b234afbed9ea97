"""Blocks of format tl1 (attributes stored as typed lists, as tracelake wrote them before tl2) stay
readable: trace by id, search and compaction, which writes them again as tl2.

``tests/fixtures/tl1``: two blocks written by ``write_block`` of commit 3148a42 from ``request.pb``
(30 synthetic traces, and one span with every kind of attribute value, a dedicated key twice and a
dedicated key of the wrong type).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from tracelake.backend import Backend, open_backend
from tracelake.block.meta import FORMAT_V1, FORMAT_V2
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1 import search as block_search
from tracelake.encoding.v1.compactor import compact
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.search.request import parse_search

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tl1"
TENANT = "single-tenant"


@pytest.fixture
def storage(tmp_path: Path) -> TraceStorageConfig:
    shutil.copytree(FIXTURE / "data", tmp_path / "data")
    return TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path / "data")))


def _sent() -> dict[bytes, list[dict]]:
    """What was written, per trace: the span rows in a canonical order."""
    spans = decode_otlp((FIXTURE / "request.pb").read_bytes()).table
    out: dict[bytes, list[dict]] = {}
    for row in spans.to_pylist():
        out.setdefault(row["trace_id"], []).append(row)
    return {tid: sorted(rows, key=lambda r: r["span_id"]) for tid, rows in out.items()}


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["span_id"])


def _blocks(backend: Backend):
    return list_blocks(backend, TENANT).metas


def test_tl1_blocks_answer_trace_by_id(storage: TraceStorageConfig) -> None:
    backend = open_backend(storage)
    assert {m.format for m in _blocks(backend)} == {FORMAT_V1}
    db = TraceDB(backend, storage)
    try:
        sent = _sent()
        for trace_id, rows in sent.items():
            found = db.find_trace(TENANT, trace_id)
            assert found is not None and _rows(found) == rows
    finally:
        db.close()


def test_tl1_blocks_are_searched_by_attribute(storage: TraceStorageConfig) -> None:
    backend = open_backend(storage)
    db = TraceDB(backend, storage)
    try:
        sent = _sent()
        with_int = {
            tid for tid, rows in sent.items() for r in rows for a in r["attributes"] if a["key"] == "i"
        }
        request = parse_search({"q": "{ span.i = -7 }", "limit": "20"})
        hits = [
            hit.trace_id
            for meta in _blocks(backend)
            for hit in block_search.search_block(db.reader(meta), db.summary(meta), request).hits
        ]
        assert len(with_int) == 1 and set(hits) == with_int
    finally:
        db.close()


def test_compacting_tl1_blocks_writes_tl2_with_every_span(storage: TraceStorageConfig) -> None:
    backend = open_backend(storage)
    inputs = _blocks(backend)
    out, stats = compact(
        backend, inputs, BlockConfig(), block_id="upgraded", compaction_level=1, batch_rows=64
    )
    assert out.format == FORMAT_V2 and stats.duplicates == 0
    assert out.total_spans == sum(m.total_spans for m in inputs)
    reader = BlockReader(backend, out)
    for trace_id, rows in _sent().items():
        found = reader.find_trace(trace_id)
        assert found is not None and _rows(found) == rows
