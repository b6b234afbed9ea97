"""Bloom filter shards of every block, held in memory within a byte budget.

A querier answers most lookups of a missing id from blooms alone, so it keeps them all — up to
``storage.trace.bloom_cache_max_bytes``; past that the least recently used shards are dropped and
read again when needed (counted in ``tracelake_bloom_cache_evictions_total``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from tracelake import read_metrics
from tracelake.bloom.filter import BloomShard


class BloomCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._shards: OrderedDict[tuple[str, int], BloomShard] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, block_id: str, index: int, load: Callable[[], BloomShard]) -> BloomShard:
        key = (block_id, index)
        with self._lock:
            shard = self._shards.get(key)
            if shard is not None:
                self._shards.move_to_end(key)
        if shard is not None:
            read_metrics.bloom_cache_requests.labels("hit").inc()
            return shard
        read_metrics.bloom_cache_requests.labels("miss").inc()
        shard = load()
        with self._lock:
            if key not in self._shards:
                self._shards[key] = shard
                self._bytes += shard.nbytes
            while self._bytes > self.max_bytes and len(self._shards) > 1:
                _, old = self._shards.popitem(last=False)
                self._bytes -= old.nbytes
                read_metrics.bloom_cache_evictions.inc()
            read_metrics.bloom_cache_bytes.set(self._bytes)
            read_metrics.bloom_cache_shards.set(len(self._shards))
        return shard

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._shards)
