"""The compactor's Prometheus metrics: Tempo's ``tempodb_*`` names under our ``tracelake_compactor_``
prefix (``tempodb_compaction_blocks_total`` -> ``tracelake_compactor_compaction_blocks_total``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

blocks_compacted = Counter(
    "tracelake_compactor_compaction_blocks_total", "Input blocks compacted.", ["level"]
)
bytes_written = Counter(
    "tracelake_compactor_compaction_bytes_written_total", "Bytes of output blocks written.", ["level"]
)
objects_written = Counter(
    "tracelake_compactor_compaction_objects_written_total", "Traces written to output blocks.", ["level"]
)
objects_combined = Counter(
    "tracelake_compactor_compaction_objects_combined_total",
    "Traces whose spans came from more than one input block.",
    ["level"],
)
spans_written = Counter(
    "tracelake_compactor_compaction_spans_written_total", "Spans written to output blocks.", ["level"]
)
spans_deduplicated = Counter(
    "tracelake_compactor_compaction_spans_deduplicated_total",
    "Exact duplicate spans dropped while merging.",
    ["level"],
)
outstanding_blocks = Gauge(
    "tracelake_compactor_compaction_outstanding_blocks",
    "Blocks in planned jobs at the start of the last cycle.",
    ["tenant"],
)
jobs = Counter(
    "tracelake_compactor_compaction_jobs_total",
    "Jobs by outcome: done, resumed (output already committed), skipped (another compactor owns or did it).",
    ["outcome"],
)
errors = Counter("tracelake_compactor_compaction_errors_total", "Cycles or jobs that failed.")
unreadable_blocks = Gauge(
    "tracelake_compactor_compaction_unreadable_blocks",
    "Blocks left out of planning: a meta that cannot be read, or data whose read failed (retried hourly).",
    ["tenant"],
)
job_duration = Histogram(
    "tracelake_compactor_compaction_duration_seconds",
    "Time to merge and commit one job.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
retention_marked = Counter(
    "tracelake_compactor_retention_marked_for_deletion_total",
    "Blocks past block_retention marked compacted.",
    ["tenant"],
)
retention_deleted = Counter(
    "tracelake_compactor_retention_deleted_total",
    "Compacted blocks deleted after compacted_block_retention.",
    ["tenant"],
)
partial_deleted = Counter(
    "tracelake_compactor_partial_blocks_deleted_total",
    "Block folders without a meta deleted after the grace period.",
    ["tenant"],
)
tenant_index_age = Gauge(
    "tracelake_compactor_blocklist_tenant_index_age_seconds",
    "Age of the tenant index when the compactor last read it (before rebuilding it).",
    ["tenant"],
)
