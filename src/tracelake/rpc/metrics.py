"""Metrics of the calls between roles: which ingester failed to answer, and for what."""

from __future__ import annotations

from prometheus_client import Counter

ingester_failures = Counter(
    "tracelake_ingester_client_failures_total",
    "Calls to an ingester that failed or timed out (the caller went on with the other replicas).",
    ["ingester", "method"],
)
quorum_failures = Counter(
    "tracelake_distributor_quorum_failures_total",
    "Pushes refused because fewer than a quorum of a trace's replicas stored it.",
    ["tenant"],
)
