"""The bloom shard cache stays within its byte budget, keeps the most recently used shards and
counts hits, misses and evictions."""

from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY

from tracelake.bloom.cache import BloomCache
from tracelake.bloom.filter import BloomShard


def _shard(seed: int) -> BloomShard:
    return BloomShard.build(np.random.default_rng(seed).integers(0, 2**63, 1000, dtype=np.uint64), 0.01)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_budget_and_recency() -> None:
    size = _shard(0).nbytes
    cache = BloomCache(max_bytes=3 * size)
    loads: list[tuple[str, int]] = []

    def get(block: str) -> BloomShard:
        def load() -> BloomShard:
            loads.append((block, 0))
            return _shard(hash(block) % 1000)

        return cache.get(block, 0, load)

    misses = _metric("tracelake_bloom_cache_requests_total", result="miss")
    evictions = _metric("tracelake_bloom_cache_evictions_total")
    for block in ("a", "b", "c"):
        get(block)
    get("a")  # a is now the most recent; b the least
    get("d")  # over budget: b goes
    assert len(cache) == 3 and cache.bytes <= 3 * size
    assert _metric("tracelake_bloom_cache_evictions_total") == evictions + 1
    get("a")
    get("c")
    assert loads.count(("a", 0)) == 1 and loads.count(("c", 0)) == 1  # kept
    get("b")
    assert loads.count(("b", 0)) == 2  # evicted, read again
    assert _metric("tracelake_bloom_cache_requests_total", result="miss") == misses + 5
    assert _metric("tracelake_bloom_cache_bytes") == cache.bytes
