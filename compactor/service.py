"""The compactor loop: every ``compaction_cycle``, per tenant: clean up, plan, run the jobs whose inputs
it can lease, rebuild the tenant index.

It runs as a thread, alone (``tracelake compactor``) or inside ``tracelake serve``. Stopping is
cooperative between jobs; a process killed mid-job leaves nothing the next cycle cannot finish or
undo (``tracelake.compaction.job``).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tracelake.backend import Backend
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import (
    BlockList,
    list_tenants,
    read_tenant_index,
    rebuild_tenant_index,
)
from tracelake.compaction.cleanup import cleanup_tenant
from tracelake.compaction.job import JobResult, run_job
from tracelake.compaction.lease import LeaseLost
from tracelake.compaction.plan import Job, plan
from tracelake.compactor import metrics
from tracelake.config import Config, TenantLimits, load_tenant_overrides
from tracelake.errors import BlockFormatError, BlockReadError, TracelakeError

log = logging.getLogger(__name__)

# A block whose read failed stays out of planning this long, so the other blocks of its window go on
# merging; then it is tried again: a read the store failed heals, a corrupt block fails (and is
# logged) again, once an hour rather than every cycle.
UNREADABLE_RETRY_SECONDS = 3600.0


@dataclass
class CycleStats:
    planned: int = 0
    done: list[JobResult] = field(default_factory=list)
    skipped: int = 0  # another compactor owns (some of) the inputs, or already did the job
    failed: int = 0
    unreadable: list[BlockReadError] = field(default_factory=list)  # inputs set aside by this cycle
    unlisted: list[BlockReadError] = field(default_factory=list)  # blocks whose meta is unreadable


class CompactorService:
    def __init__(self, cfg: Config, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.backend = backend
        self.clock = clock  # for setting unreadable blocks aside
        self._unreadable_until: dict[tuple[str, str], float] = {}  # (tenant, block id) -> retry time
        self.owner = cfg.compactor.instance_id or socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first_delay = 0.0

    def block_retention(self, overrides: dict[str, TenantLimits], tenant: str) -> float:
        limits = overrides.get(tenant)
        if limits is not None and limits.block_retention > 0:
            return limits.block_retention
        if self.cfg.overrides.block_retention > 0:
            return self.cfg.overrides.block_retention
        return self.cfg.compactor.compaction.block_retention

    def _overrides(self) -> dict[str, TenantLimits]:
        path = self.cfg.overrides.per_tenant_override_config
        if not path:
            return {}
        try:
            return load_tenant_overrides(path, self.cfg.overrides.defaults())
        except TracelakeError as exc:
            log.warning("per-tenant overrides unreadable; using defaults", extra={"error": str(exc)})
            return {}

    def run_cycle(
        self,
        on_plan: Callable[[list[Job]], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> CycleStats:
        """One pass over every tenant; ``on_plan`` sees the jobs, ``on_progress`` the spans merged."""
        compaction = self.cfg.compactor.compaction
        overrides = self._overrides()
        stats = CycleStats()
        tenants = list_tenants(self.backend)
        jobs: list[Job] = []
        for tenant in tenants:
            try:
                jobs += self._plan_tenant(tenant, overrides, stats)
            except TracelakeError as exc:  # this tenant's listing failed: the others go on
                stats.failed += 1
                metrics.errors.inc()
                log.error("compaction planning failed", extra={"tenant": tenant, "error": str(exc)})
        # Compactors start from different jobs, so that several rarely contend for the same leases.
        jobs.sort(key=lambda j: hashlib.sha256(f"{self.owner}/{j.job_id}".encode()).digest())
        stats.planned = len(jobs)
        if on_plan is not None:
            on_plan(jobs)
        done_spans = 0
        for job in jobs:
            if self._stop.is_set():
                break
            offset = done_spans
            progress = None if on_progress is None else (lambda n, offset=offset: on_progress(offset + n))
            try:
                result = run_job(
                    self.backend,
                    job,
                    compaction,
                    self.cfg.storage.trace.block,
                    self.owner,
                    on_progress=progress,
                )
            except LeaseLost as exc:  # ours expired and another compactor took the job over
                log.warning("compaction job abandoned", extra={"job": job.job_id, "reason": str(exc)})
                result = None
            except BlockReadError as exc:
                stats.failed += 1
                stats.unreadable.append(exc)
                metrics.errors.inc()
                self._set_aside(exc)
                log.error(
                    "compaction input unreadable: block left out of planning for an hour",
                    extra={"tenant": exc.tenant, "job": job.job_id, "block": exc.block_id, "error": str(exc)},
                )
                continue
            except Exception:
                stats.failed += 1
                metrics.errors.inc()
                log.exception("compaction job failed", extra={"tenant": job.tenant, "job": job.job_id})
                continue
            done_spans += job.spans
            if on_progress is not None:
                on_progress(done_spans)
            if result is None:
                stats.skipped += 1
                metrics.jobs.labels("skipped").inc()
                continue
            stats.done.append(result)
            self._record(result)
        for tenant in tenants:
            try:
                rebuild_tenant_index(self.backend, tenant)
            except TracelakeError as exc:  # readers fall back to listing when the index is old
                metrics.errors.inc()
                log.error("tenant index not rebuilt", extra={"tenant": tenant, "error": str(exc)})
        return stats

    def _plan_tenant(self, tenant: str, overrides: dict[str, TenantLimits], stats: CycleStats) -> list[Job]:
        """Clean up ``tenant`` (retention, interrupted commits, leftovers), then plan its jobs."""
        compaction = self.cfg.compactor.compaction
        self._index_age(tenant)
        cleaned, blocks = cleanup_tenant(
            self.backend, tenant, compaction, self.block_retention(overrides, tenant), time.time()
        )
        metrics.retention_marked.labels(tenant).inc(cleaned.retention_marked)
        metrics.retention_deleted.labels(tenant).inc(cleaned.compacted_deleted)
        metrics.partial_deleted.labels(tenant).inc(cleaned.partial_deleted)
        metrics.errors.inc(cleaned.failed)
        stats.unlisted += blocks.unreadable
        tenant_jobs = plan(self._readable(tenant, blocks), compaction, time.time())
        metrics.outstanding_blocks.labels(tenant).set(sum(len(j.inputs) for j in tenant_jobs))
        return tenant_jobs

    def _readable(self, tenant: str, blocks: BlockList) -> list[BlockMeta]:
        """The live blocks without those set aside as unreadable until a time still to come."""
        now = self.clock()
        metas = blocks.metas
        live = {m.block_id for m in metas}
        # Forget what expired (tried again now) and what is gone (retention, another compactor).
        self._unreadable_until = {
            key: until
            for key, until in self._unreadable_until.items()
            if key[0] != tenant or (until > now and key[1] in live)
        }
        held = {block for t, block in self._unreadable_until if t == tenant}
        metrics.unreadable_blocks.labels(tenant).set(len(held) + len(blocks.unreadable))
        return [m for m in metas if m.block_id not in held]

    def _set_aside(self, exc: BlockReadError) -> None:
        self._unreadable_until[(exc.tenant, exc.block_id)] = self.clock() + UNREADABLE_RETRY_SECONDS
        metrics.unreadable_blocks.labels(exc.tenant).inc()

    def _record(self, result: JobResult) -> None:
        level = str(result.output.compaction_level)
        metrics.jobs.labels("resumed" if result.resumed else "done").inc()
        metrics.blocks_compacted.labels(level).inc(len(result.job.inputs))
        metrics.bytes_written.labels(level).inc(result.output.size)
        metrics.objects_written.labels(level).inc(result.output.total_traces)
        metrics.objects_combined.labels(level).inc(result.stats.traces_combined)
        metrics.spans_written.labels(level).inc(result.output.total_spans)
        metrics.spans_deduplicated.labels(level).inc(result.stats.duplicates)
        metrics.job_duration.observe(result.seconds)

    def _index_age(self, tenant: str) -> None:
        try:
            index = read_tenant_index(self.backend, tenant)
        except BlockFormatError:
            index = None
        if index is not None:
            metrics.tenant_index_age.labels(tenant).set(max(0.0, time.time() - index.created_unix))

    def run_until_idle(
        self,
        on_plan: Callable[[list[Job]], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        idle_wait: float = 0.5,
    ) -> list[CycleStats]:
        """Cycles until one plans nothing, or fails every job it runs without setting an unreadable
        block aside: what ``tracelake compact`` does. Jobs owned by another compactor are waited for
        (their outputs may form new jobs)."""
        cycles = []
        while not self._stop.is_set():
            stats = self.run_cycle(on_plan, on_progress)
            cycles.append(stats)
            if stats.planned == 0:
                break
            if stats.failed and not stats.done and not stats.unreadable:
                break  # the same jobs would fail the same way at once; the service retries each cycle
            if not stats.done:
                self._stop.wait(idle_wait)
        return cycles

    def start(self, first_delay: float | None = None) -> None:
        delay = self.first_delay if first_delay is None else first_delay
        self._thread = threading.Thread(target=self._loop, args=(delay,), name="compactor", daemon=True)
        self._thread.start()

    def _loop(self, first_delay: float) -> None:
        if self._stop.wait(first_delay):
            return
        while not self._stop.is_set():
            try:
                stats = self.run_cycle()
                if stats.planned:
                    log.info(
                        "compaction cycle",
                        extra={"planned": stats.planned, "done": len(stats.done), "skipped": stats.skipped},
                    )
            except Exception:
                metrics.errors.inc()
                log.exception("compaction cycle failed")
            self._stop.wait(self.cfg.compactor.compaction.compaction_cycle)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current job (a job cut short by exit is finished or undone by the next run)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def embedded(cfg: Config, backend: Backend) -> CompactorService | None:
    """The compactor inside ``tracelake serve`` (entry point ``tracelake.background``), sharing its
    backend; its first cycle waits one ``compaction_cycle``, so start-up is not slowed."""
    if cfg.compactor.disabled:
        return None
    service = CompactorService(cfg, backend)
    service.first_delay = cfg.compactor.compaction.compaction_cycle
    return service
