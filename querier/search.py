"""``GET /api/search``: Tempo's search (tags, minDuration/maxDuration, limit, spss, start/end, and
``q`` = TraceQL) answered from the ingesters' recent data and the backend's blocks (contract §2.3)."""

from __future__ import annotations

import json

from tracelake.db import TraceDB
from tracelake.query import RecentTraces
from tracelake.search.engine import search
from tracelake.search.request import parse_search
from tracelake.search.results import search_json
from tracelake.search.scope import parse_scope


def search_body(
    db: TraceDB, recent: RecentTraces | None, tenants: list[str], params: dict[str, str]
) -> bytes:
    """The JSON answer; raises SearchRequestError (400) for a request it cannot run."""
    request = parse_search(params)
    hits, metrics = search(db, recent, tenants, request, parse_scope(params))
    return json.dumps(search_json(hits, metrics, request.traceql), separators=(",", ":")).encode()
