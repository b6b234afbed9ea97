"""Per-tenant limits: the overrides (defaults plus a per-tenant file reloaded at runtime) and the
ingestion rate limiter (a token bucket of bytes per tenant, as Tempo's local rate limit strategy)."""

from __future__ import annotations

import logging
import os
import threading
import time

from tracelake.config import OverridesConfig, TenantLimits, load_tenant_overrides
from tracelake.errors import ConfigError

log = logging.getLogger(__name__)


class Overrides:
    """Limits per tenant; ``per_tenant_override_config`` is re-read when its mtime changes."""

    def __init__(self, cfg: OverridesConfig) -> None:
        self._defaults = cfg.defaults()
        self._path = cfg.per_tenant_override_config
        self._period = cfg.per_tenant_override_period
        self._per_tenant: dict[str, TenantLimits] = {}
        self._mtime = 0.0
        self._checked = 0.0
        self._lock = threading.Lock()
        if self._path:
            self.reload(force=True)

    def reload(self, force: bool = False) -> bool:
        """Re-read the overrides file if it changed; a broken file keeps the last good limits."""
        if not self._path:
            return False
        try:
            mtime = os.stat(self._path).st_mtime
        except OSError as exc:
            if force:
                raise ConfigError(f"overrides file {self._path}: {exc.strerror}") from exc
            log.warning("overrides file unreadable, keeping the last limits", extra={"path": self._path})
            return False
        if mtime == self._mtime and not force:
            return False
        try:
            per_tenant = load_tenant_overrides(self._path, self._defaults)
        except ConfigError:
            if force:
                raise
            log.warning("overrides file invalid, keeping the last limits", exc_info=True)
            return False
        with self._lock:
            self._per_tenant, self._mtime = per_tenant, mtime
        log.info("overrides reloaded", extra={"path": self._path, "tenants": len(per_tenant)})
        return True

    def for_tenant(self, tenant: str) -> TenantLimits:
        now = time.monotonic()
        if self._path and now - self._checked >= self._period:
            self._checked = now
            self.reload()
        return self._per_tenant.get(tenant, self._defaults)


class RateLimiter:
    """A token bucket of bytes per tenant: ``rate`` bytes/s refill, ``burst`` bytes capacity."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, tenant: str, size: int, rate: float, burst: float) -> float:
        """Take ``size`` bytes; returns 0 when allowed, else the seconds to wait before retrying."""
        if rate <= 0:
            return 0.0
        burst = max(burst, rate)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(tenant, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if size <= tokens:
                self._buckets[tenant] = (tokens - size, now)
                return 0.0
            self._buckets[tenant] = (tokens, now)
            if size > burst:
                return float("inf")  # can never pass: the request alone exceeds the burst
            return (size - tokens) / rate
