"""The querier's ``RecentTraces`` over RPC: a trace by id is asked of its replicas on the ring, search
and recent blocks of every ingester; answers are merged.

After the members change (and after this process starts, when it cannot know the earlier members) a
trace's spans may still sit on the ingesters that owned it before: until those have cut and flushed
what they hold and stopped answering for it (``placement_settle``: trace idle period, max block
duration, flush checks and complete block timeout), a trace by id is asked of every ingester, as
Tempo's querier always does.

Writes succeed on a quorum W = floor(rf/2)+1 of a trace's replicas, so any W-1 ingesters may be
missing and every acknowledged span is still held by one that answered. Up to W-1 failures (dead,
slow past the deadline) are skipped and counted in ``tracelake_ingester_client_failures_total``; more
is an ``UnavailableError`` (HTTP 503) rather than an answer that may silently miss spans.
Replicas hold the same spans: they are returned once (trace by id drops repeats when it combines).
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pyarrow as pa

from tracelake.block.meta import BlockMeta
from tracelake.errors import UnavailableError
from tracelake.model.ids import id_matrix
from tracelake.ring import RingWatcher, quorum, ring_key
from tracelake.rpc import messages
from tracelake.rpc.client import ClientPool, FailedCall, IngesterClient, failure_reason
from tracelake.rpc.metrics import ingester_failures

log = logging.getLogger(__name__)
# A gRPC future, a concurrent.futures.Future (a stream read on a thread) or a FailedCall.
Call = Any
# How long past the RPC deadline to wait for a call to report it (it always does; a backstop).
_DEADLINE_SLACK = 5.0


class RingRecentTraces:
    def __init__(
        self, watcher: RingWatcher, pool: ClientPool, timeout: float, placement_settle: float = 0.0
    ) -> None:
        self.watcher = watcher
        self.pool = pool
        self.timeout = timeout
        self.placement_settle = placement_settle
        self._streams = ThreadPoolExecutor(8, thread_name_prefix="recent-spans")

    def _ask(self, method: str, members: Sequence[str], start: Callable[[IngesterClient], Call]) -> list:
        """``start`` the call on every one of ``members``; return once all but a quorum minus one
        answered. Every span acknowledged on a quorum is then held by one that answered, so a dead or
        hung ingester costs no latency while the others answer (a read quorum, as in Tempo)."""
        ring = self.watcher.ring
        allowed = quorum(ring.effective_replication) - 1 if members else 0
        need = len(members) - allowed
        arrived: queue.Queue[str] = queue.Queue()
        calls: dict[str, Call] = {}
        for address in members:
            try:
                call = start(self.pool.get(address))
            except (grpc.RpcError, ValueError) as exc:  # ValueError: a channel closed as the ring changed
                call = FailedCall(exc)
            calls[address] = call
            call.add_done_callback(lambda _c, address=address: arrived.put(address))
        answers: list = []
        failed: list[str] = []
        pending = set(members)
        while pending and len(answers) < need and len(failed) <= allowed:
            try:
                address = arrived.get(timeout=self.timeout + _DEADLINE_SLACK)
            except queue.Empty:  # the deadline should have ended every call by now
                break
            pending.discard(address)
            try:
                answers.append(calls[address].result())
            except (grpc.RpcError, ValueError) as exc:
                _count_failure(address, method, exc)
                failed.append(address)
        if len(answers) < need:
            missing = failed + sorted(pending)
            raise UnavailableError(
                f"{len(missing)} of {len(members)} ingesters did not answer ({', '.join(missing)}); "
                f"at most {allowed} may be missing with replication factor {ring.replication_factor}"
            )
        for address in pending:  # answers after ours went out: only failures are worth counting
            calls[address].add_done_callback(lambda c, address=address: _count_late(c, address, method))
        return answers

    def find_trace(self, tenant: str, trace_id: bytes) -> list[pa.Table]:
        request = messages.encode_find_trace(tenant, trace_id)
        ring = self.watcher.ring
        if time.monotonic() - self.watcher.changed_at < self.placement_settle:
            asked = ring.members  # older spans may be on the replicas of the members before
        else:
            asked = ring.replicas(ring_key(tenant, trace_id))  # where it was sent
        answers = self._ask("find_trace", asked, lambda c: c.find_trace.future(request, timeout=self.timeout))
        return [table for data in answers for table in messages.decode_tables(data)]

    def recent_spans(self, tenant: str) -> list[pa.Table]:
        request = messages.encode_tenant(tenant)

        def stream(client: IngesterClient) -> list[pa.Table]:
            return [messages.table_from_ipc(m) for m in client.recent_spans(request, timeout=self.timeout)]

        members = self.watcher.ring.members
        answers = self._ask("recent_spans", members, lambda c: self._streams.submit(stream, c))
        tables = [t for tables in answers for t in tables if t.num_rows]
        return [dedupe_spans(tables)] if tables else []

    def recent_blocks(self, tenant: str) -> list[BlockMeta]:
        request = messages.encode_tenant(tenant)
        answers = self._ask(
            "recent_blocks",
            self.watcher.ring.members,
            lambda c: c.recent_blocks.future(request, timeout=self.timeout),
        )
        by_id: dict[str, BlockMeta] = {}
        for data in answers:
            for obj in json.loads(data or b"[]"):
                meta = BlockMeta.from_json(obj, where="an ingester's recent blocks")
                by_id.setdefault(meta.block_id, meta)
        return list(by_id.values())

    def close(self) -> None:
        self._streams.shutdown(wait=False, cancel_futures=True)


def _count_failure(address: str, method: str, exc: BaseException) -> None:
    ingester_failures.labels(address, method).inc()
    log.warning(
        "ingester did not answer",
        extra={"ingester": address, "method": method, "error": failure_reason(exc)},
    )


def _count_late(call: Call, address: str, method: str) -> None:
    error = call.exception()
    if error is not None:
        _count_failure(address, method, error)


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
