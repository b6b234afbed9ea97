"""The contract between receivers and whatever accepts spans (the distributor, in one process or not).

A receiver turns its protocol into OTLP protobuf bytes and calls ``SpanPusher.push``; it never knows
whether the spans go to an ingester in this process or over RPC. Refusals are ``PushError`` with the
HTTP status a receiver should answer (gRPC and Thrift receivers map it to their own codes).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from tracelake.config import DEFAULT_TENANT
from tracelake.errors import TracelakeError

TENANT_HEADER = "X-Scope-OrgID"


@dataclass
class PushResult:
    accepted_spans: int
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> spans refused

    @property
    def rejected_spans(self) -> int:
        return sum(self.rejected.values())

    def message(self) -> str:
        """OTLP's partial-success message: what was refused and why, empty when nothing was."""
        return ", ".join(
            f"{n} span(s) refused: {reason.replace('_', ' ')}" for reason, n in sorted(self.rejected.items())
        )


class PushError(TracelakeError):
    """A whole request was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # the discard metric's label
        self.retry_after = retry_after


class SpanPusher(Protocol):
    def push(self, tenant: str, otlp: bytes, *, protocol: str) -> PushResult:
        """Accept the spans of one serialized ``ExportTraceServiceRequest``; durable when it returns."""
        ...


def resolve_tenant(header: str | None, multitenancy_enabled: bool) -> str:
    """The tenant of a request: ``X-Scope-OrgID`` when multi-tenancy is on, else ``single-tenant``."""
    if not multitenancy_enabled:
        return DEFAULT_TENANT
    tenant = (header or "").strip()
    if not tenant:
        raise PushError(401, f"no org id: set the {TENANT_HEADER} header", reason="no_tenant")
    if not valid_tenant(tenant):
        raise PushError(400, f"invalid {TENANT_HEADER} {tenant[:160]!r}", reason="invalid_tenant")
    return tenant


_TENANT = re.compile(r"[A-Za-z0-9!\-_.*'()]{1,150}")


def valid_tenant(tenant: str) -> bool:
    """Tempo's rule: at most 150 of ``A-Z a-z 0-9 ! - _ . * ' ( )``, not ``.`` or ``..``; so a tenant
    is always usable as a path part of the object store."""
    return bool(_TENANT.fullmatch(tenant)) and tenant not in (".", "..")
