"""Trace by ID: recent spans (ingesters) and blocks, combined, each span once."""

from __future__ import annotations

import pyarrow as pa
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tracelake.codec.encode import spans_to_traces_data
from tracelake.db import TraceDB
from tracelake.query import RecentTraces
from tracelake.search.scope import EVERYTHING, JobScope


def find_trace(
    db: TraceDB,
    recent: RecentTraces | None,
    tenants: list[str],
    trace_id: bytes,
    seconds: tuple[int, int] | None = None,
    scope: JobScope = EVERYTHING,
) -> TracesData | None:
    """The trace from every tenant in ``tenants``; ``seconds`` (start, end) skips blocks outside it,
    ``scope`` limits the job to recent data or to a range of block ids (a frontend's shard)."""
    parts: list[pa.Table] = []
    for tenant in tenants:
        answered: set[str] = set()
        if recent is not None and scope.recent:
            parts += recent.find_trace(tenant, trace_id)
        if not scope.blocks:
            continue
        if recent is not None and scope.recent:  # blocks the ingesters already read for this job
            answered = {m.block_id for m in recent.recent_blocks(tenant)}
        window = (seconds[0] * 10**9, seconds[1] * 10**9) if seconds else None
        stored = db.find_trace(tenant, trace_id, window, skip=answered, only=scope.has_block)
        if stored is not None:
            parts.append(stored)
    if not parts:
        return None
    spans = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return spans_to_traces_data(spans)  # drops spans stored twice (ingester and block, replicas)
