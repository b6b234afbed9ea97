"""The distributor's side of the push RPC: each trace to its replicas, a write succeeds on a quorum.

A request is split by trace at the wire level (``otlp.split``); traces with the same replica set travel
together as one batch, and every ingester gets one call holding all the batches it is a replica of. A
batch is stored when a quorum (floor(rf/2)+1) of its replicas stored it; one batch short of that fails
the whole request with the status OTLP clients retry (503), so nothing acknowledged is held by fewer
than a quorum. Validation is a pure function of (payload, receive time, rules), so every replica
accepts and refuses the same spans; the first answer of a batch stands for all.
"""

from __future__ import annotations

import logging
import queue
from collections import Counter
from dataclasses import dataclass, field

import grpc

from tracelake.errors import InvalidInputError
from tracelake.otlp.split import split_by_trace
from tracelake.push import PushError, PushResult
from tracelake.ring import RingWatcher, quorum, ring_key
from tracelake.rpc import messages
from tracelake.rpc.client import ClientPool, FailedCall, failure_reason
from tracelake.rpc.metrics import ingester_failures, quorum_failures

log = logging.getLogger(__name__)

# A refusal every replica gives for the same reason (the request itself is wrong): passed on as is.
_CLIENT_ERRORS = (400, 413, 429)
# How long past the RPC deadline to wait for gRPC to report it (it always does; this is a backstop).
_DEADLINE_SLACK = 5.0


@dataclass
class _Batch:
    replicas: tuple[str, ...]
    payload: bytes
    stored: list[messages.BatchResult] = field(default_factory=list)
    failed: list[messages.BatchResult] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        """Stored on a quorum, or refused by too many replicas to reach one."""
        need = quorum(len(self.replicas))
        return len(self.stored) >= need or len(self.failed) > len(self.replicas) - need


class RingPusher:
    def __init__(self, watcher: RingWatcher, pool: ClientPool, timeout: float) -> None:
        self.watcher = watcher
        self.pool = pool
        self.timeout = timeout

    def forward(self, tenant: str, otlp: bytes, received_unix_nano: int) -> PushResult:
        """Store ``otlp`` on the replicas of each of its traces; raises PushError below quorum."""
        ring = self.watcher.ring
        if not ring.members:
            raise PushError(503, "no ingester in the ring", reason="no_ingesters", retry_after=1)
        if ring.effective_replication == len(ring.members):
            # Every member is a replica of every trace: nothing to split (a common small cluster).
            groups = {ring.members: otlp}
        else:
            groups = _split(otlp, lambda trace_id: ring.replicas(ring_key(tenant, trace_id)))
        batches = [_Batch(replicas, payload) for replicas, payload in groups.items()]
        calls: dict[str, list[_Batch]] = {}
        for batch in batches:
            for address in batch.replicas:
                calls.setdefault(address, []).append(batch)
        futures = {
            address: self._call(address, tenant, received_unix_nano, mine) for address, mine in calls.items()
        }
        # Answers are taken as they come, and the request is answered once every batch has its quorum
        # (or can no longer reach it): a slow or hung replica costs no latency while the others are
        # a quorum, as in Tempo's DoBatch. Its late answer is only counted.
        arrived: queue.Queue[str] = queue.Queue()
        for address, future in futures.items():
            future.add_done_callback(lambda _f, address=address: arrived.put(address))
        pending = set(futures)
        while pending and not all(batch.decided for batch in batches):
            try:
                address = arrived.get(timeout=self.timeout + _DEADLINE_SLACK)
            except queue.Empty:  # the RPC deadline should have ended every call by now
                break
            pending.discard(address)
            self._collect(tenant, address, futures[address], calls[address])
        for address in pending:
            futures[address].add_done_callback(lambda f, address=address: _count_late(f, address))
        result = PushResult(accepted_spans=0, rejected=Counter())
        for batch in batches:
            if len(batch.stored) < quorum(len(batch.replicas)):
                quorum_failures.labels(tenant).inc()
                raise _refusal(batch)
            first = batch.stored[0]
            result.accepted_spans += first.accepted
            result.rejected.update(first.refused)
        return result

    def _collect(self, tenant: str, address: str, future, mine: list[_Batch]) -> None:
        try:
            answers = messages.decode_push_response(future.result())
            if len(answers) != len(mine):
                raise ValueError(f"{len(answers)} answers for {len(mine)} batches")
        except (grpc.RpcError, ValueError, InvalidInputError) as exc:  # ValueError: a channel closed
            ingester_failures.labels(address, "push").inc()
            reason = failure_reason(exc)
            log.warning(
                "push to an ingester failed", extra={"tenant": tenant, "ingester": address, "error": reason}
            )
            answers = [
                messages.BatchResult(
                    error_status=503,
                    error_message=f"ingester {address}: {reason}",
                    error_reason="ingester_unavailable",
                )
            ] * len(mine)
        for batch, answer in zip(mine, answers, strict=True):
            (batch.stored if answer.ok else batch.failed).append(answer)

    def _call(self, address: str, tenant: str, received: int, batches: list[_Batch]):
        request = messages.PushRequest(tenant, received, [b.payload for b in batches]).encode()
        try:
            return self.pool.get(address).push.future(request, timeout=self.timeout)
        except (grpc.RpcError, ValueError) as exc:
            return FailedCall(exc)


def _count_late(future, address: str) -> None:
    """A replica answered after the request was: only a failure is worth counting."""
    error = future.exception()
    if error is not None:
        ingester_failures.labels(address, "push").inc()
        log.warning(
            "push to an ingester failed after quorum",
            extra={"ingester": address, "error": failure_reason(error)},
        )


def _split(otlp: bytes, owner) -> dict[tuple[str, ...], bytes]:
    try:
        return split_by_trace(otlp, owner)
    except InvalidInputError as exc:
        raise PushError(400, str(exc), reason="invalid_request") from exc


def _refusal(batch: _Batch) -> PushError:
    statuses = {f.error_status for f in batch.failed}
    if len(statuses) == 1 and (status := statuses.pop()) in _CLIENT_ERRORS:
        first = batch.failed[0]
        retry = first.retry_after_ms / 1000 if first.retry_after_ms else None
        return PushError(status, first.error_message, reason=first.error_reason, retry_after=retry)
    why = "; ".join(sorted({f.error_message for f in batch.failed}))
    return PushError(
        503,
        f"only {len(batch.stored)} of {len(batch.replicas)} replicas stored the spans "
        f"(quorum {quorum(len(batch.replicas))}): {why}; retry",
        reason="ingester_unavailable",
        retry_after=1,
    )
