"""``tracelake serve`` runs the compactor: blocks already in the store are merged while it serves, the
API's /metrics shows it, and a SIGTERM still stops the process cleanly."""

from __future__ import annotations

import time
from pathlib import Path

from tests.compactor.helpers import span_keys, synth_spans, write_split_blocks
from tests.server.harness import Server
from tracelake.backend import open_backend
from tracelake.blocklist.tenant_index import list_blocks


def test_serve_compacts_in_the_background(tmp_path: Path) -> None:
    server = Server(
        tmp_path,
        receivers=("otlp_http",),
        extra={"compactor": {"compaction": {"compaction_cycle": "200ms", "block_retention": 0}}},
    )
    backend = open_backend(server.storage)
    spans = synth_spans(traces=100, seed=9)
    write_split_blocks(backend, spans, blocks=4, replicated=1)
    server.start()
    try:
        distinct = len(span_keys(spans))
        deadline = time.monotonic() + 30
        while [m.total_spans for m in list_blocks(backend, "single-tenant").metas] != [distinct]:
            assert time.monotonic() < deadline, "serve did not compact the blocks"
            time.sleep(0.1)
        # The job's metrics are recorded just after its inputs are marked compacted.
        while server.metric("tracelake_compactor_compaction_jobs_total", outcome="done") < 1:
            assert time.monotonic() < deadline, "no compaction job counted"
            time.sleep(0.1)
        assert server.metric("tracelake_compactor_compaction_jobs_total", outcome="done") == 1
        assert server.metric("tracelake_compactor_compaction_blocks_total", level="1") == 5
    finally:
        assert server.stop() == 0
    stored = server.stored_spans()
    assert span_keys(stored) == span_keys(spans)
