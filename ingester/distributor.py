"""The distributor: what every receiver pushes into (``tracelake.push.SpanPusher``).

Applies the tenant's limits (request size, ingestion rate), decodes and validates the spans, and hands
them to the ingester, which makes them durable before ``push`` returns. In one process the ingester is
called directly; in the distributor role a ``Forwarder`` (``tracelake.rpc.pusher.RingPusher``) sends
the spans to their ingesters over RPC and each of them runs ``store``.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from tracelake.codec.validate import prepare_spans
from tracelake.config import Config
from tracelake.errors import InvalidInputError
from tracelake.ingester import metrics
from tracelake.ingester.ingester import Ingester
from tracelake.ingester.limits import Overrides, RateLimiter
from tracelake.push import PushError, PushResult


class Distributor:
    def __init__(
        self,
        cfg: Config,
        ingester: Ingester | None,
        overrides: Overrides,
        forward: Forwarder | None = None,
    ) -> None:
        """``ingester`` in one process; ``forward`` (and no ingester) in the distributor role."""
        self.cfg = cfg
        self.ingester = ingester
        self.forward = forward
        self.overrides = overrides
        self.rate_limiter = RateLimiter()

    def push(self, tenant: str, otlp: bytes, *, protocol: str) -> PushResult:
        # Refusals are counted by the receiver (tracelake_receiver_requests_total), which also sees
        # those raised before the distributor; counting here too would count them twice.
        started = time.monotonic()
        try:
            return self._push(tenant, otlp)
        finally:
            metrics.push_duration.observe(time.monotonic() - started)

    def _push(self, tenant: str, otlp: bytes) -> PushResult:
        limit = self.cfg.distributor.max_request_bytes
        if limit and len(otlp) > limit:
            raise PushError(
                413,
                f"request of {len(otlp)} bytes exceeds the limit of {limit} bytes",
                reason="request_too_large",
            )
        limits = self.overrides.for_tenant(tenant)
        wait = self.rate_limiter.take(
            tenant, len(otlp), limits.ingestion_rate_limit_bytes, limits.ingestion_burst_size_bytes
        )
        if wait:
            message = (
                f"ingestion rate limit ({limits.ingestion_rate_limit_bytes} bytes/s, burst "
                f"{limits.ingestion_burst_size_bytes} bytes) exceeded for tenant {tenant}"
            )
            retry = None if math.isinf(wait) else max(1.0, math.ceil(wait))
            if retry is None:
                message += f": a request of {len(otlp)} bytes can never pass; send smaller requests"
            raise PushError(429, message, reason="rate_limited", retry_after=retry)
        received = time.time_ns()
        if self.forward is not None:
            result = self.forward.forward(tenant, otlp, received)
            count(tenant, result, len(otlp))
            return result
        assert self.ingester is not None
        return store(self.ingester, tenant, otlp, received)


class Forwarder(Protocol):
    """Where the distributor role sends what passed the limits: the ingesters, over RPC."""

    def forward(self, tenant: str, otlp: bytes, received_unix_nano: int) -> PushResult: ...


def store(ingester: Ingester, tenant: str, otlp: bytes, received: int) -> PushResult:
    """Decode, validate and durably accept one request in this process's ingester."""
    try:
        prepared = prepare_spans(otlp, received, ingester.rules(tenant))
    except InvalidInputError as exc:
        raise PushError(400, str(exc), reason="invalid_request") from exc
    outcome = ingester.push(tenant, prepared, otlp, received)
    if prepared.truncated_attributes:
        metrics.attributes_truncated.labels(tenant).inc(prepared.truncated_attributes)
    result = PushResult(accepted_spans=outcome.accepted, rejected=outcome.refused)
    count(tenant, result, len(otlp))
    return result


def count(tenant: str, result: PushResult, request_bytes: int) -> None:
    for reason, n in result.rejected.items():
        metrics.discarded_spans.labels(tenant, reason).inc(n)
    if result.accepted_spans:
        metrics.spans_received.labels(tenant).inc(result.accepted_spans)
        metrics.bytes_received.labels(tenant).inc(request_bytes)
