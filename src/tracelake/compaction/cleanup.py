"""What a compaction cycle deletes or finishes, per tenant, from one look at the bucket.

* a live block that a live block replaces: a job committed its output but died before marking its
  inputs; marking them finishes it;
* a live block whose newest span is older than the tenant's ``block_retention``: marked compacted
  (as Tempo does), so it leaves readers' lists first and its objects later;
* a compacted block older than ``compacted_block_retention``: deleted; until then readers holding an
  older block list still find its spans;
* a folder with neither meta (an unfinished write) whose newest object is older than
  ``partial_block_grace_period``: deleted. The grace period covers writes still in progress.

A step the store refuses (a bucket that denies deletes, object lock) is logged and counted, and the
rest goes on: it is tried again next cycle, and it never stops compaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import BlockList, list_blocks
from tracelake.compaction.job import mark_compacted
from tracelake.config import CompactionConfig
from tracelake.errors import BackendError

log = logging.getLogger(__name__)
_NS = 1_000_000_000


@dataclass
class CleanupStats:
    commits_finished: int = 0
    retention_marked: int = 0
    compacted_deleted: int = 0
    partial_deleted: int = 0
    failed: int = 0  # steps the store refused (logged; tried again next cycle)

    def attempt(self, step: str, tenant: str, block: str, action: Callable[[], None]) -> bool:
        try:
            action()
        except BackendError as exc:
            self.failed += 1
            extra = {"tenant": tenant, "block": block, "step": step, "error": str(exc)}
            log.error("cleanup step failed", extra=extra)
            return False
        return True


def cleanup_tenant(
    backend: Backend, tenant: str, cfg: CompactionConfig, block_retention: float, now: float
) -> tuple[CleanupStats, BlockList]:
    """Apply the rules above; returns what was done and the tenant's blocks afterwards."""
    stats = CleanupStats()
    blocks = list_blocks(backend, tenant)
    replaced = {block_id for m in blocks.metas for block_id in m.replaces}
    oldest_kept = int((now - block_retention) * _NS)
    live: list[BlockMeta] = []
    for meta in blocks.metas:  # neither a replaced nor an expired block is merged, marked or not
        block = meta.block_id
        if block in replaced:
            if stats.attempt("mark replaced", tenant, block, lambda m=meta: mark_compacted(backend, m, now)):
                stats.commits_finished += 1
                log.info("finished an interrupted commit", extra={"tenant": tenant, "block": block})
        elif block_retention > 0 and meta.end_unix_nano < oldest_kept:
            if stats.attempt("mark expired", tenant, block, lambda m=meta: mark_compacted(backend, m, now)):
                stats.retention_marked += 1
                log.info("block past retention", extra={"tenant": tenant, "block": block})
        else:
            live.append(meta)
    for compacted in blocks.compacted:
        if compacted.compacted_unix + cfg.compacted_block_retention < now:
            block = compacted.meta.block_id
            prefix = keys.block_prefix(tenant, block)
            if stats.attempt("delete compacted", tenant, block, lambda p=prefix: backend.delete_prefix(p)):
                stats.compacted_deleted += 1
    _delete_partial_folders(backend, tenant, cfg.partial_block_grace_period, now, stats)
    return stats, replace(blocks, metas=live)


def _delete_partial_folders(
    backend: Backend, tenant: str, grace: float, now: float, stats: CleanupStats
) -> None:
    names: dict[str, set[str]] = {}
    newest: dict[str, float] = {}
    for info in backend.list(f"{tenant}/"):
        parts = info.key.split("/")
        if len(parts) != 3:
            continue
        names.setdefault(parts[1], set()).add(parts[2])
        newest[parts[1]] = max(newest.get(parts[1], 0.0), info.last_modified)
    for block_id, files in names.items():
        if keys.META in files or keys.COMPACTED_META in files or newest[block_id] > now - grace:
            continue
        prefix = keys.block_prefix(tenant, block_id)
        if stats.attempt("delete unfinished", tenant, block_id, lambda p=prefix: backend.delete_prefix(p)):
            stats.partial_deleted += 1
            log.info("deleted an unfinished block folder", extra={"tenant": tenant, "block": block_id})
