"""One job's commit protocol, leases, and the cleanup rules (both backends)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.compactor.helpers import TENANT, span_keys, synth_spans, visible_spans, write_split_blocks
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.compaction import lease
from tracelake.compaction.cleanup import cleanup_tenant
from tracelake.compaction.job import committed_output, run_job
from tracelake.compaction.plan import plan
from tracelake.config import BlockConfig, CompactionConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1.compactor import compact

CFG = BlockConfig(parquet_row_group_size_spans=300)
COMPACTION = CompactionConfig(max_input_blocks=4)


@pytest.fixture(scope="module")
def spans() -> pa.Table:
    return synth_spans(traces=150, seed=5)


def test_job_commits_output_then_marks_inputs(backend: Backend, spans: pa.Table) -> None:
    write_split_blocks(backend, spans, blocks=3, replicated=1, cfg=CFG)
    (job,) = plan(list_blocks(backend, TENANT).metas, COMPACTION, time.time())
    result = run_job(backend, job, COMPACTION, CFG, "me")
    assert result is not None and not result.resumed
    assert result.output.block_id == job.output_block_id
    blocks = list_blocks(backend, TENANT)
    assert [m.block_id for m in blocks.metas] == [job.output_block_id]
    assert sorted(c.meta.block_id for c in blocks.compacted) == job.input_ids
    counts, holders = visible_spans(backend)
    assert counts == span_keys(spans) and set(counts.values()) == {1}
    assert all(len(h) == 1 for h in holders.values())
    assert not [i.key for i in backend.list(f"{TENANT}/") if lease.LEASE_NAME in i.key]  # released


def test_a_committed_output_hides_its_inputs_and_a_retry_only_marks(
    backend: Backend, storage_config: TraceStorageConfig, spans: pa.Table
) -> None:
    write_split_blocks(backend, spans, blocks=2, replicated=1, cfg=CFG)
    (job,) = plan(list_blocks(backend, TENANT).metas, COMPACTION, time.time())
    # A compactor died right after the output's meta.json: inputs and output are all live.
    compact(backend, list(job.inputs), CFG, block_id=job.output_block_id, compaction_level=1, batch_rows=100)
    assert len(list_blocks(backend, TENANT).metas) == 4
    counts, _ = visible_spans(backend)
    assert counts == span_keys(spans) and set(counts.values()) == {1}
    db = TraceDB(backend, storage_config)  # the querier's path: tenant index or listing, then hiding
    assert [m.block_id for m in db.block_list(TENANT).metas] == [job.output_block_id]
    trace_id = spans["trace_id"][0].as_py()
    assert set(span_keys(db.find_trace(TENANT, trace_id)).values()) == {1}
    assert committed_output(backend, job) is not None
    result = run_job(backend, job, COMPACTION, CFG, "me")
    assert result is not None and result.resumed
    assert [m.block_id for m in list_blocks(backend, TENANT).metas] == [job.output_block_id]


def test_cleanup_finishes_an_interrupted_commit(backend: Backend, spans: pa.Table) -> None:
    write_split_blocks(backend, spans, blocks=2, cfg=CFG)
    (job,) = plan(list_blocks(backend, TENANT).metas, COMPACTION, time.time())
    compact(backend, list(job.inputs), CFG, block_id=job.output_block_id, compaction_level=1, batch_rows=100)
    stats, _ = cleanup_tenant(backend, TENANT, COMPACTION, 0, time.time())
    assert stats.commits_finished == 2
    assert [m.block_id for m in list_blocks(backend, TENANT).metas] == [job.output_block_id]


def test_leases_exclude_other_owners_until_they_expire(backend: Backend) -> None:
    now = 1000.0
    a = lease.acquire(backend, TENANT, ["b1", "b2"], "a", 60, now)
    assert a is not None
    assert lease.acquire(backend, TENANT, ["b2", "b3"], "b", 60, now + 1) is None
    assert lease.acquire(backend, TENANT, ["b3"], "b", 60, now + 1) is not None  # b3 was left free
    again = lease.acquire(backend, TENANT, ["b1"], "a", 60, now + 2)  # a restarted "a" takes its own back
    assert again is not None
    taken = lease.acquire(backend, TENANT, ["b2"], "b", 60, now + 61)  # a's lease on b2 expired
    assert taken == [keys.block_key(TENANT, "b2", f"{lease.LEASE_NAME}1")]
    assert lease.acquire(backend, TENANT, ["b2"], "c", 60, now + 62) is None
    lease.release(backend, taken)
    assert lease.acquire(backend, TENANT, ["b2"], "c", 60, now + 62) is not None


def test_retention_compacted_retention_and_partial_folders(backend: Backend, spans: pa.Table) -> None:
    old, recent = write_split_blocks(backend, spans, blocks=2, cfg=CFG)
    backend.write(keys.block_key(TENANT, "partial", keys.DATA), b"half a block")
    now = time.time()
    # Keep blocks whose newest span is newer than the midpoint of the two blocks' ends.
    retention = now - (old.end_unix_nano + recent.end_unix_nano) / 2e9
    if old.end_unix_nano > recent.end_unix_nano:
        old, recent = recent, old
    cfg = CompactionConfig(compacted_block_retention=100, partial_block_grace_period=50)
    stats, _ = cleanup_tenant(backend, TENANT, cfg, retention, now)
    assert (stats.retention_marked, stats.compacted_deleted, stats.partial_deleted) == (1, 0, 0)
    assert [m.block_id for m in list_blocks(backend, TENANT).metas] == [recent.block_id]
    assert backend.exists(keys.block_key(TENANT, "partial", keys.DATA))  # within its grace period

    later = now + 101
    stats, _ = cleanup_tenant(backend, TENANT, cfg, retention + 101, later)
    assert (stats.retention_marked, stats.compacted_deleted, stats.partial_deleted) == (0, 1, 1)
    assert not list(backend.list(keys.block_prefix(TENANT, old.block_id)))
    assert not backend.exists(keys.block_key(TENANT, "partial", keys.DATA))
    assert [m.block_id for m in list_blocks(backend, TENANT).metas] == [recent.block_id]


def test_a_long_job_renews_its_leases_and_stops_when_one_is_taken_over(
    backend: Backend, spans: pa.Table
) -> None:
    write_split_blocks(backend, spans, blocks=3, cfg=CFG)
    (job,) = plan(list_blocks(backend, TENANT).metas, COMPACTION, time.time())
    slow = CompactionConfig(max_input_blocks=4, lease_duration=600, memory_budget_bytes=1)  # small steps
    ticks = iter(range(0, 10**9, 400))  # every clock reading is 400 s later: renew at each step

    def lease_gens() -> list[str]:
        return sorted(i.key for i in backend.list(f"{TENANT}/") if lease.LEASE_NAME in i.key)

    seen: list[list[str]] = []
    result = run_job(
        backend,
        job,
        slow,
        CFG,
        "me",
        clock=lambda: float(next(ticks)),
        on_progress=lambda _: seen.append(lease_gens()),
    )
    assert result is not None and len(seen) > 2
    assert all(len(gens) == len(job.inputs) for gens in seen)  # one lease per input at every step
    assert seen[0] != seen[-1]  # renewed: newer generations
    assert lease_gens() == []  # released at the end

    write_split_blocks(backend, spans, blocks=3, cfg=CFG, tenant="other")
    (job,) = plan(list_blocks(backend, "other").metas, COMPACTION, time.time())
    ticks = iter(range(0, 10**9, 400))

    def take_over(_: int) -> None:  # another compactor, long after our lease expired
        lease.acquire(backend, "other", job.input_ids, "thief", 600, 10**8)

    with pytest.raises(lease.LeaseLost):
        run_job(backend, job, slow, CFG, "me", clock=lambda: float(next(ticks)), on_progress=take_over)
    assert not backend.exists(keys.block_key("other", job.output_block_id, keys.META))
    assert len(list_blocks(backend, "other").metas) == 3  # nothing committed, inputs untouched


_HEAP_CHILD = """
from tracelake.compaction.job import release_freed_memory

def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:")) // 1024

blocks = [bytearray(4000) for _ in range(50_000)]  # 200 MB of the C heap (above pymalloc's sizes)
keep = bytearray(4000)  # allocated last: the heap's top stays in use, so free() cannot shrink it
del blocks
before = anon()
release_freed_memory()
print(before, anon())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_a_job_gives_freed_heap_pages_back_to_the_system() -> None:
    """Between jobs a compactor keeps only what it uses: freed heap pages below a live allocation
    stay resident until ``malloc_trim`` (which ``run_job`` calls when a job ends)."""
    done = subprocess.run([sys.executable, "-c", _HEAP_CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert before - after > 150, (before, after)  # MiB
