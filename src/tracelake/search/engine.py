"""One search across a tenant's data: the ingesters' memory and recent blocks, then (with a time
range, as Tempo) the backend's blocks, newest first, several blocks at a time, stopping once
``limit`` traces are newer than every block left."""

from __future__ import annotations

from tracelake.block.meta import BlockMeta
from tracelake.db import TraceDB
from tracelake.encoding.v1.search import BlockSearchResult, search_block
from tracelake.query import RecentTraces
from tracelake.search.recent import search_recent
from tracelake.search.request import SearchRequest
from tracelake.search.results import Collector, SearchMetrics, TraceHit
from tracelake.search.scope import EVERYTHING, JobScope


def _overlaps(meta: BlockMeta, request: SearchRequest) -> bool:
    if request.start_ns is None or request.end_ns is None:
        return True
    return meta.end_unix_nano >= request.start_ns and meta.start_unix_nano <= request.end_ns


def blocks_to_search(
    db: TraceDB,
    recent: RecentTraces | None,
    tenant: str,
    request: SearchRequest,
    scope: JobScope = EVERYTHING,
) -> list[BlockMeta]:
    """The ingester's recent blocks always; the backend's only for a request with a time range
    (Tempo: a search without start/end asks only the ingesters) or naming its blocks (a frontend's
    job). Newest first, each block once."""
    metas: dict[str, BlockMeta] = {}
    if recent is not None and scope.recent:
        metas.update((m.block_id, m) for m in recent.recent_blocks(tenant))
    if scope.blocks and (request.has_range or scope.block_ids is not None):
        metas.update((m.block_id, m) for m in db.block_list(tenant).metas if scope.has_block(m.block_id))
    chosen = [m for m in metas.values() if _overlaps(m, request)]
    return sorted(chosen, key=lambda m: m.end_unix_nano, reverse=True)


def search(
    db: TraceDB,
    recent: RecentTraces | None,
    tenants: list[str],
    request: SearchRequest,
    scope: JobScope = EVERYTHING,
) -> tuple[list[TraceHit], SearchMetrics]:
    collector = Collector(request.limit, request.spss)
    metrics = SearchMetrics()
    metas: list[BlockMeta] = []
    for tenant in tenants:
        if recent is not None and scope.recent:
            metrics.total_jobs += 1
            traces, inspected = search_recent(recent.recent_spans(tenant), request, collector)
            metrics.inspected_traces += traces
            metrics.inspected_bytes += inspected
            metrics.completed_jobs += 1
        metas.extend(blocks_to_search(db, recent, tenant, request, scope))
    metas.sort(key=lambda m: m.end_unix_nano, reverse=True)
    metrics.total_blocks = len(metas)
    metrics.total_jobs += len(metas)
    metrics.total_block_bytes = sum(m.size for m in metas)
    step = 4  # blocks searched at once: the stop test runs between steps
    for lo in range(0, len(metas), step):
        if collector.done(metas[lo].end_unix_nano):
            break
        batch = metas[lo : lo + step]

        def one(meta: BlockMeta, newer_than: int | None = collector.kth_newest_start()) -> BlockSearchResult:
            return search_block(db.reader(meta), db.summary(meta), request, newer_than, db.columns)

        results = db.pool.map(one, batch) if len(batch) > 1 else [one(batch[0])]
        for result in results:
            metrics.completed_jobs += 1
            metrics.inspected_bytes += result.inspected_bytes
            metrics.inspected_traces += result.inspected_traces
            for hit in result.hits:
                collector.add(hit)
    return collector.results(), metrics
