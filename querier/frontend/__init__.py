"""The query-frontend: Tempo's API in front of a pool of queriers, requests split into jobs."""
