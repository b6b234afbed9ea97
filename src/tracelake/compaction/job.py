"""Run one compaction job: own its inputs, merge them into one block, then mark the inputs compacted.

The order makes every crash recoverable without losing or doubling a span for readers:
1. the output's objects, ``meta.json`` last (a crash before it leaves an invisible folder, deleted after
   ``partial_block_grace_period``);
2. ``meta.json`` written: the commit point. Readers hide live blocks that a live block ``replaces``;
3. each input gets ``meta.compacted.json``, then loses ``meta.json`` (a crash in between is finished by
   the next cleanup, which marks every live block a live block replaces).
The output id is derived from the input ids, so a retried job (or, despite leases, a doubled one)
writes the same block rather than a second copy; a retry that finds the output committed only marks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tracelake import failpoints
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta, CompactedMeta
from tracelake.compaction import lease
from tracelake.compaction.plan import Job
from tracelake.config import BlockConfig, CompactionConfig
from tracelake.encoding.v1.compactor import MergeStats, compact
from tracelake.errors import BackendError, BlockFormatError, ObjectNotFoundError

log = logging.getLogger(__name__)

# Memory per buffered span: a block row of benchmarks/compaction_bench.py decodes to 563 B in format
# tl2 (755 B in tl1), and each input's reader holds more beside its batches; batches sized for 576 B
# reached 219-225 MiB peak RSS against 191-202 at 1024 (docs/compaction.md, "Measured"). A quarter
# of the memory budget buffers the inputs (two batches each at most): each input's Parquet reader
# also holds the decoded pages of its current row group, outside the budget. Half the budget is the
# merged step on its way out (rows of the step, their sorted copy, the writer's pending rows: up to
# four copies); steps this size keep the per-step cost small (4096 instead of 8192 rows: +10% CPU).
ARROW_BYTES_PER_SPAN = 1024
BUFFERED_BATCHES = 2
OUTPUT_COPIES = 4
MIN_ROWS = 256
MAX_ROWS = 65536


@functools.cache
def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system after a job. A job's numpy arrays and Python
    objects come and go in glibc's heap, which keeps freed pages between live ones: after the 11 jobs
    of `tracelake compact` on benchmarks/compaction_bench.py's blocks, /proc/self/smaps showed 45 MiB
    resident in the heap, 23 MiB with a trim after each job (a long-running compactor sits at the
    lower figure between jobs)."""
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


@dataclass
class JobResult:
    job: Job
    output: BlockMeta
    stats: MergeStats = field(default_factory=MergeStats)
    seconds: float = 0.0
    resumed: bool = False  # the output was already committed by an earlier attempt


def merge_rows(cfg: CompactionConfig, inputs: int) -> tuple[int, int]:
    """(rows read per input at a time, rows merged per step) within ``memory_budget_bytes``."""
    half, quarter = cfg.memory_budget_bytes // 2, cfg.memory_budget_bytes // 4

    def clamp(rows: int) -> int:
        return int(min(max(rows, MIN_ROWS), MAX_ROWS))

    batch = clamp(quarter // (max(inputs, 1) * BUFFERED_BATCHES * ARROW_BYTES_PER_SPAN))
    return batch, clamp(half // (OUTPUT_COPIES * ARROW_BYTES_PER_SPAN))


def mark_compacted(backend: Backend, meta: BlockMeta, now: float) -> None:
    """``meta.compacted.json`` first, then remove ``meta.json``: the block is never without a meta."""
    body = json.dumps(CompactedMeta(meta, now).to_json()).encode()
    backend.write(keys.block_key(meta.tenant_id, meta.block_id, keys.COMPACTED_META), body)
    backend.delete(keys.block_key(meta.tenant_id, meta.block_id, keys.META))


def committed_output(backend: Backend, job: Job) -> BlockMeta | None:
    """The job's output if an earlier attempt already committed it (same inputs recorded)."""
    key = keys.block_key(job.tenant, job.output_block_id, keys.META)
    try:
        meta = BlockMeta.from_bytes(backend.read(key), key)
    except (ObjectNotFoundError, BlockFormatError):
        return None
    return meta if sorted(meta.replaces) == job.input_ids else None


def run_job(
    backend: Backend,
    job: Job,
    compaction: CompactionConfig,
    block: BlockConfig,
    owner: str,
    *,
    on_progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> JobResult | None:
    """Run ``job`` if its inputs can be leased and are still live; None when another compactor owns
    them, merged some of them, or finished the job. A job whose output an earlier attempt committed
    only marks the inputs still live (``resumed``)."""
    held = lease.acquire(backend, job.tenant, job.input_ids, owner, compaction.lease_duration, clock())
    if held is None:
        return None
    started = time.monotonic()
    try:
        live = [m for m in job.inputs if backend.exists(keys.block_key(job.tenant, m.block_id, keys.META))]
        output = committed_output(backend, job)
        if output is None and len(live) < len(job.inputs):
            return None  # another compactor merged some inputs since this one listed them
        if output is not None and not live:
            return None  # another compactor finished this very job since this one listed it
        if output is not None:
            result = JobResult(job, output, resumed=True)
        else:
            batch, emit = merge_rows(compaction, len(job.inputs))
            acquired = clock()

            def progress(spans: int) -> None:
                # Renew at half the lease: a long job keeps its inputs; one whose lease was taken
                # over stops here, before its output's meta.json (nothing of it is visible).
                nonlocal held, acquired
                now = clock()
                if now - acquired > compaction.lease_duration / 2:
                    held = lease.renew(backend, job.tenant, held, owner, compaction.lease_duration, now)
                    acquired = now
                if on_progress is not None:
                    on_progress(spans)

            output, stats = compact(
                backend,
                list(job.inputs),
                block,
                block_id=job.output_block_id,
                compaction_level=job.level + 1,
                batch_rows=batch,
                emit_rows=emit,
                on_progress=progress,
            )
            result = JobResult(job, output, stats)
        failpoints.hit("compactor.after_output")
        for i, meta in enumerate(live):
            try:
                mark_compacted(backend, meta, clock())
            except BackendError as exc:  # committed: readers hide the input already; cleanup marks it
                extra = {"tenant": job.tenant, "block": meta.block_id, "error": str(exc)}
                log.warning("compacted input not marked yet", extra=extra)
            if i == 0:
                failpoints.hit("compactor.after_first_mark")
        result.seconds = time.monotonic() - started
        log.info(
            "compaction job done",
            extra={
                "tenant": job.tenant,
                "job": job.job_id,
                "owner": owner,
                "inputs": ",".join(job.input_ids),
                "output": output.block_id,
                "level": output.compaction_level,
                "spans": output.total_spans,
                "duplicates": result.stats.duplicates,
                "resumed": result.resumed,
                "seconds": round(result.seconds, 3),
            },
        )
        return result
    finally:
        lease.release(backend, held)
        release_freed_memory()
