"""Object storage for blocks: one interface, one module per backend (local directory, S3).

Callers open a backend from the typed config with ``open_backend`` and never import a backend
module directly, so a new store is one new module plus one branch here.
"""

from __future__ import annotations

from tracelake.backend.base import (
    Backend,
    ByteRequest,
    ObjectInfo,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
    validate_key,
)
from tracelake.config import TraceStorageConfig
from tracelake.errors import ConfigError

__all__ = [
    "Backend",
    "ByteRequest",
    "ObjectInfo",
    "OffsetByteRequest",
    "RangeByteRequest",
    "SuffixByteRequest",
    "open_backend",
    "validate_key",
]


def open_backend(cfg: TraceStorageConfig) -> Backend:
    """The backend ``cfg.backend`` names; a local directory is created if missing.

    Nothing is sent over the network here: a store that is down at start-up fails the first request
    with a clear error instead of preventing the process from starting.
    """
    if cfg.backend == "local":
        from tracelake.backend.local import LocalBackend

        return LocalBackend(cfg.local.path)
    if cfg.backend == "s3":
        from tracelake.backend.s3 import S3Backend

        return S3Backend(cfg.s3)
    raise ConfigError(f"storage.trace.backend {cfg.backend!r} is not supported (use local or s3)")
