"""The query-frontend's Prometheus metrics (Tempo's ``tempo_query_frontend_*`` with our prefix)."""

from __future__ import annotations

from prometheus_client import Counter

jobs = Counter("tracelake_query_frontend_jobs_total", "Jobs sent to queriers, by operation.", ["op"])
retries = Counter("tracelake_query_frontend_retries_total", "Jobs sent again after a failure.", ["op"])
hedged = Counter(
    "tracelake_query_frontend_hedged_requests_total", "Slow jobs also sent to another querier.", ["op"]
)
failed = Counter("tracelake_query_frontend_failed_jobs_total", "Jobs that failed every attempt.", ["op"])
