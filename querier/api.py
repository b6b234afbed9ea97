"""Tempo's query HTTP API (the part Grafana's Tempo data source needs), served on
``server.http_listen_port``. This module: trace by ID, ``/api/traces/{id}`` and ``/api/v2/traces/{id}``;
tag names and values (``/api/[v2/]search/tags``, ``/api/[v2/]search/tag/{tag}/values``) via ``tags``.

Shapes follow ../shared/docs/tempo-api-contract.md §2.2 and §3.1 and Tempo 2.7.2's captured answers:
JSON with base64 ids, enum names and 64-bit numbers as strings; protobuf ``Trace`` (wire-identical to
OTLP ``TracesData``) and ``TraceByIDResponse`` (the trace in field 1, always present).
"""

from __future__ import annotations

import json
import logging
import re
import time
from urllib.parse import unquote

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tracelake.asgi import Request, Response
from tracelake.config import DEFAULT_TENANT, Config
from tracelake.db import TraceDB
from tracelake.errors import (
    BackendError,
    BlockFormatError,
    InvalidInputError,
    InvalidTraceIDError,
    UnavailableError,
)
from tracelake.model.ids import parse_trace_id
from tracelake.otlp.wire import len_field
from tracelake.push import TENANT_HEADER, valid_tenant
from tracelake.querier import metrics, tags
from tracelake.querier.search import search_body
from tracelake.querier.trace_by_id import find_trace
from tracelake.query import RecentTraces
from tracelake.search.scope import parse_scope

TRACE_PATH = re.compile(r"^/api/(v2/)?traces/([^/]+)$")
SEARCH_PATH = re.compile(r"^/api/search/?$")
TAGS_PATH = re.compile(r"^/api/(v2/)?search/tags/?$")
TAG_VALUES_PATH = re.compile(r"^/api/(v2/)?search/tag/(.+)/values/?$")
log = logging.getLogger("tracelake.querier")
PROTOBUF = "application/protobuf"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def trace_id_of(text: str) -> bytes:
    """The path's trace id (``model.ids.parse_trace_id``), refused in Tempo's words."""
    try:
        return parse_trace_id(text)
    except InvalidTraceIDError as exc:
        if exc.reason == "not hex":
            char = exc.text[exc.position - 1]
            message = (
                "trace IDs can only contain hex characters: "
                f"invalid character '{char}' at position {exc.position}"
            )
        elif exc.reason == "too long":
            message = "trace IDs can't be larger than 128 bits"
        else:
            message = "trace ID is empty"
        raise QueryError(400, message) from exc


def tenants_of(request: Request, multitenancy_enabled: bool) -> list[str]:
    """The tenants to read: ``X-Scope-OrgID``, where ``a|b`` means both (sorted, deduplicated)."""
    if not multitenancy_enabled:
        return [DEFAULT_TENANT]
    header = request.headers.get(TENANT_HEADER.lower(), "").strip()
    if not header:
        raise QueryError(401, "no org id")
    tenants = sorted({t.strip() for t in header.split("|") if t.strip()})
    for tenant in tenants:
        if not valid_tenant(tenant):
            raise QueryError(400, f"invalid tenant id {tenant[:160]!r}")
    return tenants


def time_range(request: Request) -> tuple[int, int] | None:
    """The optional ``start``/``end`` hint (Unix seconds): both or none, end after start."""
    start, end = request.query.get("start"), request.query.get("end")
    if not start and not end:
        return None
    try:
        lo, hi = int(start or ""), int(end or "")
    except ValueError as exc:
        raise QueryError(400, "start and end must both be Unix seconds") from exc
    if lo == 0 and hi == 0:
        return None
    if hi <= lo:
        raise QueryError(400, "end must be after start")
    return lo, hi


def for_grafana(trace: TracesData) -> TracesData:
    """Grafana dereferences resource, scope and status without nil checks: make them present."""
    for rs in trace.resource_spans:
        rs.resource.SetInParent()
        for ss in rs.scope_spans:
            ss.scope.SetInParent()
            for span in ss.spans:
                span.status.SetInParent()
    return trace


class QueryAPI:
    def __init__(self, cfg: Config, db: TraceDB, recent: RecentTraces | None) -> None:
        self.cfg = cfg
        self.db = db
        self.recent = recent

    def handle(self, request: Request) -> Response | None:
        """The answer to ``request``, or None when the path is not one of ours."""
        trace = TRACE_PATH.match(request.path)
        tag_list = TAGS_PATH.match(request.path)
        values = TAG_VALUES_PATH.match(request.path)
        searching = SEARCH_PATH.match(request.path)
        if trace is None and tag_list is None and values is None and searching is None:
            return None
        if request.method != "GET":
            return Response(405, b"method not allowed\n", headers=(("allow", "GET"),))
        v2 = "v2_" if request.path.startswith("/api/v2/") else ""
        if trace is not None:
            route = f"api_{v2}traces_traceid"
        elif searching is not None:
            route = "api_search"
        elif tag_list is not None:
            route = f"api_{v2}search_tags"
        else:
            route = f"api_{v2}search_tag_tagname_values"
        started = time.perf_counter()
        response = self._answer(request, trace, tag_list, values, searching)
        metrics.request_duration.labels(route, str(response.status)).observe(time.perf_counter() - started)
        return response

    def _answer(
        self,
        request: Request,
        trace: re.Match[str] | None,
        tag_list: re.Match[str] | None,
        values: re.Match[str] | None,
        searching: re.Match[str] | None,
    ) -> Response:
        try:
            if trace is not None:
                return self._trace_by_id(request, v2=bool(trace.group(1)), id_text=trace.group(2))
            if searching is not None:
                return self._search(request)
            if tag_list is not None:
                return self._tags(request, v2=bool(tag_list.group(1)))
            assert values is not None
            return self._tag_values(request, v2=bool(values.group(1)), tag=values.group(2))
        except QueryError as exc:
            return Response(exc.status, str(exc).encode(), TEXT)
        except (tags.TagError, InvalidInputError) as exc:
            return Response(400, str(exc).encode(), TEXT)
        except UnavailableError as exc:  # too few ingesters answered: an answer could miss spans
            log.warning("query failed: ingesters unavailable", extra=_log_fields(request, trace, exc))
            return Response(503, str(exc).encode(), TEXT, headers=(("retry-after", "1"),))
        except BackendError as exc:  # the store failed or refused: worth retrying later
            log.warning("query failed: backend error", extra=_log_fields(request, trace, exc))
            return Response(503, f"object store error: {exc}".encode(), TEXT)
        except BlockFormatError as exc:
            log.error("query failed: unreadable block", extra=_log_fields(request, trace, exc))
            return Response(500, f"unreadable block: {exc}".encode(), TEXT)

    def _search(self, request: Request) -> Response:
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        return Response(200, search_body(self.db, self.recent, tenants, request.query), JSON)

    def _tags(self, request: Request, v2: bool) -> Response:
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        limit = tags.parse_limit(request.query.get("limit"))
        query = tags.narrowing_query(request.query.get("q", "")) if v2 else None
        source = tags.scan(self.db, self.recent, tenants, time_range(request), query)
        if v2:
            body = tags.tags_v2(source, request.query.get("scope", ""), limit)
        else:
            body = tags.tags_v1(source, limit)
        return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)

    def _tag_values(self, request: Request, v2: bool, tag: str) -> Response:
        """``tag`` once more percent-decoded: Grafana <= 12.2 encodes it twice (contract §2.4)."""
        name = unquote(tag)
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        limit = tags.parse_limit(request.query.get("limit"))
        if v2:
            parsed = tags.parse_tag(name)  # a 400 before any block is read
            query = tags.narrowing_query(request.query.get("q", ""))
            source = tags.scan(self.db, self.recent, tenants, time_range(request), query)
            body = tags.tag_values_v2(source, parsed, limit)
        else:
            source = tags.scan(self.db, self.recent, tenants, time_range(request))
            body = tags.tag_values_v1(source, name, limit)
        return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)

    def _trace_by_id(self, request: Request, v2: bool, id_text: str) -> Response:
        trace_id = trace_id_of(id_text)
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        scope = parse_scope(request.query)
        found = find_trace(self.db, self.recent, tenants, trace_id, time_range(request), scope)
        return trace_response(found, v2, PROTOBUF in request.headers.get("accept", ""))


def trace_response(found: TracesData | None, v2: bool, as_protobuf: bool) -> Response:
    """A trace (or none) as Tempo answers ``/api/traces/{id}`` (v1) or ``/api/v2/traces/{id}``."""
    trace = for_grafana(found) if found is not None else TracesData()
    if not v2:
        if found is None:
            return Response(404, b"", "text/plain; charset=utf-8")
        if as_protobuf:
            return Response(200, trace.SerializeToString(), PROTOBUF)
        body = {"batches": json_format.MessageToDict(trace).get("resourceSpans", [])}
        return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)
    if as_protobuf:  # TraceByIDResponse: field 1 (the trace) always present, even empty
        return Response(200, len_field(1, trace.SerializeToString()), PROTOBUF)
    body = {"trace": json_format.MessageToDict(trace)}
    return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)


def create(cfg: Config, db: TraceDB, recent: RecentTraces | None) -> QueryAPI:
    """Entry point (``tracelake.api``): ``tracelake serve`` builds the query API through it."""
    return QueryAPI(cfg, db, recent)


def _log_fields(request: Request, trace: re.Match[str] | None, exc: Exception) -> dict[str, str]:
    """What an operator greps a failed query's log line by: tenant, trace id, path."""
    fields = {"tenant": request.headers.get(TENANT_HEADER.lower(), ""), "path": request.path}
    if trace is not None:
        fields["traceID"] = trace.group(2)
    return {**fields, "error": str(exc)}
