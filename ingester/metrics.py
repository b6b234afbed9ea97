"""The write path's Prometheus metrics: Tempo's names with our prefix, one registry per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no *_created series: Tempo has none and they double the scrape

spans_received = Counter(
    "tracelake_distributor_spans_received_total", "Spans accepted by the distributor.", ["tenant"]
)
bytes_received = Counter(
    "tracelake_distributor_bytes_received_total", "Request bytes accepted by the distributor.", ["tenant"]
)
discarded_spans = Counter(
    "tracelake_discarded_spans_total", "Spans refused, by reason.", ["tenant", "reason"]
)
attributes_truncated = Counter(
    "tracelake_distributor_attributes_truncated_total",
    "Attribute values cut to max_attribute_bytes.",
    ["tenant"],
)
receiver_requests = Counter(
    "tracelake_receiver_requests_total", "Requests by receiver and outcome.", ["receiver", "outcome"]
)
push_duration = Histogram(
    "tracelake_distributor_push_duration_seconds",
    "Time to decode, validate and durably accept one request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
live_traces = Gauge("tracelake_ingester_live_traces", "Traces held in memory, not yet cut.", ["tenant"])
head_block_bytes = Gauge(
    "tracelake_ingester_head_block_bytes", "Bytes held in the head block, not yet flushed.", ["tenant"]
)
blocks_flushed = Counter(
    "tracelake_ingester_blocks_flushed_total", "Blocks written to the backend.", ["tenant"]
)
flush_failures = Counter("tracelake_ingester_flush_failed_total", "Block writes that failed.", ["tenant"])
flush_duration = Histogram(
    "tracelake_ingester_flush_duration_seconds",
    "Time to complete and upload one block.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
flush_queue_length = Gauge("tracelake_ingester_flush_queue_length", "Head blocks waiting to be flushed.")
wal_bytes = Gauge("tracelake_ingester_wal_bytes", "Bytes of WAL segments on disk.")
wal_replay_records = Counter("tracelake_ingester_wal_replay_records_total", "WAL records replayed at start.")
wal_replay_spans_skipped = Counter(
    "tracelake_ingester_wal_replay_spans_skipped_total",
    "Replayed spans dropped because a block flushed before the crash already holds them.",
)
wal_corrupt_segments = Counter(
    "tracelake_ingester_wal_corrupt_segments_total", "WAL segments whose replay stopped at a bad record."
)
