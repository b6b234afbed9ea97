"""Block lists held in memory, reloaded every ``storage.trace.blocklist_poll``.

A lookup must not pay a GET of the tenant index (or a bucket listing) each time. Readers may see a
list up to one poll period old: the ingester serves the blocks it flushed for
``complete_block_timeout`` (longer than the poll), so nothing falls in between.
"""

from __future__ import annotations

import threading
import time

from tracelake import read_metrics
from tracelake.backend import Backend
from tracelake.blocklist.tenant_index import BlockList, load_block_list


class BlockListCache:
    def __init__(self, backend: Backend, poll_seconds: float, stale_index_seconds: float) -> None:
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.stale_index_seconds = stale_index_seconds
        self._lists: dict[str, tuple[BlockList, float]] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> BlockList:
        now = time.monotonic()
        with self._lock:
            cached = self._lists.get(tenant)
        if cached is not None and now - cached[1] < self.poll_seconds:
            return cached[0]
        with read_metrics.blocklist_poll_duration.time():
            blocks = load_block_list(self.backend, tenant, self.stale_index_seconds)
        read_metrics.blocklist_length.labels(tenant).set(len(blocks.metas))
        with self._lock:
            self._lists[tenant] = (blocks, now)
        return blocks

    def invalidate(self, tenant: str) -> None:
        """This process changed the tenant's blocks: the next ``get`` reloads."""
        with self._lock:
            self._lists.pop(tenant, None)
