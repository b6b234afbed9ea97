"""SIGKILL an import at random moments: whatever is visible afterwards is complete and readable."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracelake.backend import open_backend
from tracelake.block import keys
from tracelake.blocklist.tenant_index import list_blocks, read_tenant_index
from tracelake.config import LocalStorageConfig, TraceStorageConfig
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.synth import SynthConfig, generate_request_bytes

CONFIG = """
storage:
  trace:
    local:
      path: {path}
ingester:
  max_block_bytes: 3000000
"""


def _import(tmp_path: Path, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracelake.cli.main",
            "--config",
            str(tmp_path / "c.yaml"),
            "import",
            str(data),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _check_visible_blocks_are_complete(store: Path) -> int:
    backend = open_backend(TraceStorageConfig(local=LocalStorageConfig(path=str(store))))
    blocks = list_blocks(backend, "single-tenant")
    index = read_tenant_index(backend, "single-tenant")
    listed = {m.block_id for m in blocks.metas}
    if index is not None:  # the index never names a block that is not complete
        assert {m.block_id for m in index.metas} <= listed
    for meta in blocks.metas:
        reader = BlockReader(backend, meta)
        summary = pq.read_table(
            pa.BufferReader(backend.read(keys.block_key("single-tenant", meta.block_id, keys.SUMMARY)))
        )
        assert summary.num_rows == meta.total_traces
        assert sum(t.num_rows for t in reader.iter_spans()) == meta.total_spans
        for trace_id in random.Random(0).sample(summary["trace_id"].to_pylist(), 50):
            assert reader.find_trace(trace_id) is not None
    return len(blocks.metas)


def test_sigkill_during_import_leaves_only_complete_blocks(tmp_path: Path) -> None:
    data = tmp_path / "in.pb"
    with data.open("wb") as out:
        for payload in generate_request_bytes(SynthConfig(traces=4000, seed=11)):
            out.write(payload)
    (tmp_path / "c.yaml").write_text(CONFIG.format(path=tmp_path / "ref"))
    started = time.monotonic()
    assert _import(tmp_path, data).wait(timeout=120) == 0
    full_run = time.monotonic() - started
    total = _check_visible_blocks_are_complete(tmp_path / "ref")
    assert total >= 3, "the import should cut several blocks for this test to mean anything"

    rng = random.Random(3)
    seen_partial = False
    for attempt in range(5):
        store = tmp_path / f"crash{attempt}"
        (tmp_path / "c.yaml").write_text(CONFIG.format(path=store))
        proc = _import(tmp_path, data)
        time.sleep(rng.uniform(0.2, 1.0) * full_run)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if store.exists():
            visible = _check_visible_blocks_are_complete(store)
            seen_partial |= 0 < visible < total
    assert seen_partial, "no kill landed between two blocks; the test did not exercise a crash"
