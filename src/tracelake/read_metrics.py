"""The read path's Prometheus metrics (block lists, blooms and summaries held in memory), named like
Tempo's ``tempodb_*`` ones with our prefix. Services expose them on ``/metrics`` with the rest."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

blocklist_length = Gauge("tracelake_blocklist_length", "Blocks in the last polled block list.", ["tenant"])
blocklist_poll_duration = Histogram(
    "tracelake_blocklist_poll_duration_seconds",
    "Time to load a tenant's block list (tenant index or listing).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
bloom_cache_bytes = Gauge("tracelake_bloom_cache_bytes", "Bytes of bloom filter shards held in memory.")
bloom_cache_shards = Gauge("tracelake_bloom_cache_shards", "Bloom filter shards held in memory.")
bloom_cache_requests = Counter(
    "tracelake_bloom_cache_requests_total", "Bloom shard lookups, by whether memory held it.", ["result"]
)
bloom_cache_evictions = Counter(
    "tracelake_bloom_cache_evictions_total", "Bloom shards dropped to stay within the memory budget."
)
footer_cache_bytes = Gauge(
    "tracelake_footer_cache_bytes", "Estimated bytes of parsed data.parquet footers held by block readers."
)
footer_cache_evictions = Counter(
    "tracelake_footer_cache_evictions_total", "Block readers dropped to keep parsed footers within budget."
)
summary_cache_bytes = Gauge("tracelake_summary_cache_bytes", "Bytes of block summaries held for search.")
search_cache_bytes = Gauge("tracelake_search_cache_bytes", "Bytes of block columns held decoded for search.")
search_cache_requests = Counter(
    "tracelake_search_cache_requests_total",
    "Block column lookups by search, by whether memory held it.",
    ["result"],
)
