"""The querier's ``RecentTraces`` over RPC: every ingester in the ring is asked, answers are merged.

Writes succeed on a quorum W = floor(rf/2)+1 of a trace's replicas, so any W-1 ingesters may be
missing and every acknowledged span is still held by one that answered. Up to W-1 failures (dead,
slow past the deadline) are skipped and counted in ``tracelake_ingester_client_failures_total``; more
is an ``UnavailableError`` (HTTP 503) rather than an answer that may silently miss spans.
Replicas hold the same spans: they are returned once (trace by id drops repeats when it combines).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
import numpy as np
import pyarrow as pa

from tracelake.block.meta import BlockMeta
from tracelake.errors import UnavailableError
from tracelake.model.ids import id_matrix
from tracelake.ring import RingWatcher, quorum
from tracelake.rpc import messages
from tracelake.rpc.client import ClientPool, IngesterClient
from tracelake.rpc.metrics import ingester_failures

log = logging.getLogger(__name__)
T = TypeVar("T")


class RingRecentTraces:
    def __init__(self, watcher: RingWatcher, pool: ClientPool, timeout: float) -> None:
        self.watcher = watcher
        self.pool = pool
        self.timeout = timeout
        self._streams = ThreadPoolExecutor(8, thread_name_prefix="recent-spans")

    def _ask_all(self, method: str, call: Callable[[IngesterClient], T]) -> list[T]:
        ring = self.watcher.ring
        answers: list[T] = []
        failed: list[str] = []
        pending = {address: self._streams.submit(call, self.pool.get(address)) for address in ring.members}
        for address, future in pending.items():
            try:
                answers.append(future.result())
            except (grpc.RpcError, ValueError) as exc:  # ValueError: a channel closed as the ring changed
                ingester_failures.labels(address, method).inc()
                log.warning(
                    "ingester did not answer",
                    extra={
                        "ingester": address,
                        "method": method,
                        "error": exc.code().name if isinstance(exc, grpc.RpcError) else str(exc),
                    },
                )
                failed.append(address)
        allowed = quorum(ring.effective_replication) - 1 if ring.members else 0
        if len(failed) > allowed:
            raise UnavailableError(
                f"{len(failed)} of {len(ring.members)} ingesters did not answer ({', '.join(failed)}); "
                f"at most {allowed} may be missing with replication factor {ring.replication_factor}"
            )
        return answers

    def find_trace(self, tenant: str, trace_id: bytes) -> list[pa.Table]:
        request = messages.encode_find_trace(tenant, trace_id)
        answers = self._ask_all(
            "find_trace", lambda c: messages.decode_tables(c.find_trace(request, timeout=self.timeout))
        )
        return [table for tables in answers for table in tables]

    def recent_spans(self, tenant: str) -> list[pa.Table]:
        request = messages.encode_tenant(tenant)

        def stream(client: IngesterClient) -> list[pa.Table]:
            return [messages.table_from_ipc(m) for m in client.recent_spans(request, timeout=self.timeout)]

        tables = [t for tables in self._ask_all("recent_spans", stream) for t in tables if t.num_rows]
        return [dedupe_spans(tables)] if tables else []

    def recent_blocks(self, tenant: str) -> list[BlockMeta]:
        request = messages.encode_tenant(tenant)
        answers = self._ask_all("recent_blocks", lambda c: c.recent_blocks(request, timeout=self.timeout))
        by_id: dict[str, BlockMeta] = {}
        for data in answers:
            for obj in json.loads(data or b"[]"):
                meta = BlockMeta.from_json(obj, where="an ingester's recent blocks")
                by_id.setdefault(meta.block_id, meta)
        return list(by_id.values())

    def close(self) -> None:
        self._streams.shutdown(wait=False, cancel_futures=True)


def dedupe_spans(tables: list[pa.Table]) -> pa.Table:
    """One table of the spans, each (trace id, span id, start, kind) once, first occurrence kept."""
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    n = table.num_rows
    start = table["start_time_unix_nano"].to_numpy().astype("<u8").view(np.uint8).reshape(n, 8)
    kind = table["kind"].to_numpy().astype("<i4").view(np.uint8).reshape(n, 4)
    keys = np.ascontiguousarray(
        np.concatenate([id_matrix(table["trace_id"]), id_matrix(table["span_id"]), start, kind], axis=1)
    )
    _, first = np.unique(keys.view(np.dtype((np.void, keys.shape[1]))).ravel(), return_index=True)
    if len(first) == n:
        return table
    return table.take(pa.array(np.sort(first)))
