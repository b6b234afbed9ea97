"""The query API's Prometheus metrics: Tempo's ``tempo_request_duration_seconds`` with our prefix,
so refused requests (400, 401) are counted by route like answered ones."""

from __future__ import annotations

from prometheus_client import Histogram

request_duration = Histogram(
    "tracelake_request_duration_seconds",
    "Time to answer a query API request, by route and status code.",
    ["route", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
