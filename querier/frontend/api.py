"""Tempo's query API answered by splitting each request into jobs for a pool of queriers.

* Trace by ID: one job for the ingesters' recent data plus, when the block list has blocks that may
  hold the trace, up to ``trace_by_id.query_shards`` jobs (one per ``blocks_per_shard`` such blocks),
  each for a range of the block-id space, all at once; the traces they return are combined, each
  span once.
* Search: one job for recent data and, with a time range, jobs of blocks (about
  ``search.target_bytes_per_job`` each) from the block list, newest first, ``search.concurrent_jobs``
  at a time, until ``limit`` traces are newer than every block left; answers are combined newest
  first.
* Tag names and values: sent to one querier.

A job that fails is retried on another querier; a slow one is hedged (``pool.py``). A request whose
jobs keep failing gets 503, so clients retry, rather than a silently partial answer.
"""

from __future__ import annotations

import json
import logging
import time

import pyarrow as pa
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from tracelake.asgi import Request, Response
from tracelake.block.meta import BlockMeta
from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.errors import InvalidInputError
from tracelake.otlp.wire import len_field
from tracelake.push import TENANT_HEADER
from tracelake.querier import metrics as api_metrics
from tracelake.querier.api import (
    JSON,
    PROTOBUF,
    SEARCH_PATH,
    TAG_VALUES_PATH,
    TAGS_PATH,
    TEXT,
    TRACE_PATH,
    QueryError,
    tenants_of,
    time_range,
    trace_id_of,
    trace_response,
)
from tracelake.querier.frontend.pool import Answer, Job, JobFailed, QuerierPool
from tracelake.search.request import SearchRequest, parse_search
from tracelake.search.results import Collector, SearchMetrics, hit_from_json, metrics_from_json, search_json
from tracelake.search.scope import block_id_shards, candidate_shards

log = logging.getLogger("tracelake.frontend")


def block_jobs(metas: list[BlockMeta], target_bytes: int) -> list[list[BlockMeta]]:
    """Blocks newest first, grouped into jobs of about ``target_bytes`` (a big block is a job alone)."""
    jobs: list[list[BlockMeta]] = []
    size = 0
    for meta in sorted(metas, key=lambda m: m.end_unix_nano, reverse=True):
        if jobs and size + meta.size <= target_bytes:
            jobs[-1].append(meta)
            size += meta.size
        else:
            jobs.append([meta])
            size = meta.size
    return jobs


class FrontendAPI:
    def __init__(self, cfg: Config, db: TraceDB, pool: QuerierPool) -> None:
        self.cfg = cfg
        self.fe = cfg.query_frontend
        self.db = db  # block lists only: the frontend never reads a block
        self.pool = pool

    def handle(self, request: Request) -> Response | None:
        trace = TRACE_PATH.match(request.path)
        searching = SEARCH_PATH.match(request.path)
        tags = TAGS_PATH.match(request.path) or TAG_VALUES_PATH.match(request.path)
        if trace is None and searching is None and tags is None:
            return None
        if request.method != "GET":
            return Response(405, b"method not allowed\n", headers=(("allow", "GET"),))
        route = "api_traces_traceid" if trace else "api_search" if searching else "api_search_tags"
        started = time.perf_counter()
        try:
            if trace is not None:
                response = self._trace_by_id(request, v2=bool(trace.group(1)), id_text=trace.group(2))
            elif searching is not None:
                response = self._search(request)
            else:
                response = self._forward(request)
        except QueryError as exc:
            response = Response(exc.status, str(exc).encode(), TEXT)
        except InvalidInputError as exc:
            response = Response(400, str(exc).encode(), TEXT)
        except JobFailed as exc:
            log.warning("query failed: jobs kept failing", extra={"path": request.path, "error": str(exc)})
            response = Response(503, f"queriers failed: {exc}".encode(), TEXT)
        api_metrics.request_duration.labels(route, str(response.status)).observe(
            time.perf_counter() - started
        )
        return response

    def _headers(self, request: Request, accept: str = JSON) -> dict[str, str]:
        headers = {"Accept": accept}
        tenant = request.headers.get(TENANT_HEADER.lower())
        if tenant:
            headers[TENANT_HEADER] = tenant
        return headers

    # ------------------------------------------------------------------ trace by id

    def _trace_by_id(self, request: Request, v2: bool, id_text: str) -> Response:
        trace_id = trace_id_of(id_text)  # 400 here, not in every job
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        seconds = time_range(request)
        params = {k: v for k, v in request.query.items() if k in ("start", "end")}
        path = f"/api/traces/{trace_id.hex()}"
        headers = self._headers(request, PROTOBUF)
        jobs = [Job("trace_by_id", path, {**params, "mode": "ingesters"}, headers)]
        for start, end in self._trace_shards(tenants, trace_id.hex(), seconds):
            scope = {"mode": "blocks", "blockStart": start, "blockEnd": end}
            jobs.append(Job("trace_by_id", path, {**params, **scope}, headers))
        answers = self.pool.run_all(
            jobs, self.fe.trace_by_id.hedge_requests_at, self.fe.trace_by_id.hedge_requests_up_to
        )
        for answer in answers:
            if answer.status not in (200, 404):
                return _passed_on(answer)
        return _combined(
            [a.body for a in answers if a.status == 200], v2, PROTOBUF in request.headers.get("accept", "")
        )

    def _trace_shards(
        self, tenants: list[str], hex_id: str, seconds: tuple[int, int] | None
    ) -> list[tuple[str, str]]:
        """The block-id ranges to send block jobs for: one per ``blocks_per_shard`` blocks of the
        frontend's block list that may hold the trace (up to ``query_shards``), none without such a
        block.

        The list may be a poll older than the queriers': a block flushed since is answered by the
        ingester that wrote it (the ingesters' job) until ``complete_block_timeout``, which must exceed
        ``blocklist_poll``. Without a list (the backend failed), every shard, as before.
        """
        shards = self.fe.trace_by_id.query_shards
        try:
            ids = [
                m.block_id
                for t in tenants
                for m in self.db.block_list(t).metas
                if _may_hold(m, hex_id, seconds)
            ]
        except Exception as exc:  # any backend error: the queriers may still read their own lists
            log.warning("block list unavailable, every shard asked", extra={"error": str(exc)})
            return block_id_shards(shards)
        if not ids:
            return []
        per_shard = max(1, self.fe.trace_by_id.blocks_per_shard)
        return candidate_shards(ids, min(shards, -(-len(ids) // per_shard)))

    # ------------------------------------------------------------------ search

    def _search(self, request: Request) -> Response:
        search = parse_search(request.query)  # 400 here, not in every job
        tenants = tenants_of(request, self.cfg.multitenancy_enabled)
        headers = self._headers(request)
        base = {
            k: v for k, v in request.query.items() if k not in ("mode", "blocks", "blockStart", "blockEnd")
        }
        collector = Collector(search.limit, search.spss)
        totals = SearchMetrics()
        recent = Job("search", "/api/search", {**base, "mode": "ingesters"}, headers)
        groups = block_jobs(self._blocks(tenants, search), self.fe.search.target_bytes_per_job)
        totals.total_jobs = 1 + len(groups)
        totals.total_blocks = sum(len(g) for g in groups)
        totals.total_block_bytes = sum(m.size for g in groups for m in g)
        pending: list[Job] = [recent]
        index = 0
        width = max(1, self.fe.search.concurrent_jobs)
        while pending or index < len(groups):
            while index < len(groups) and len(pending) < width:
                if collector.done(max(m.end_unix_nano for m in groups[index])):
                    index = len(groups)  # every block left is older than the answer
                    break
                ids = ",".join(m.block_id for m in groups[index])
                pending.append(
                    Job("search", "/api/search", {**base, "mode": "blocks", "blocks": ids}, headers)
                )
                index += 1
            if not pending:
                break
            answers = self.pool.run_all(
                pending, self.fe.search.hedge_requests_at, self.fe.search.hedge_requests_up_to
            )
            pending = []
            for answer in answers:
                if answer.status != 200:
                    return _passed_on(answer)
                body = json.loads(answer.body)
                for obj in body.get("traces", []):
                    collector.add(hit_from_json(obj))
                part = metrics_from_json(body.get("metrics", {}))
                totals.inspected_bytes += part.inspected_bytes
                totals.inspected_traces += part.inspected_traces
                totals.completed_jobs += 1
        body = search_json(collector.results(), totals, search.traceql)
        return Response(200, json.dumps(body, separators=(",", ":")).encode(), JSON)

    def _blocks(self, tenants: list[str], search: SearchRequest) -> list[BlockMeta]:
        """The blocks a search reads: only with a time range (Tempo's rule), overlapping it."""
        if not search.has_range:
            return []
        assert search.start_ns is not None and search.end_ns is not None
        return [
            m
            for tenant in tenants
            for m in self.db.block_list(tenant).metas
            if m.end_unix_nano >= search.start_ns and m.start_unix_nano <= search.end_ns
        ]

    # ------------------------------------------------------------------ tags

    def _forward(self, request: Request) -> Response:
        tenants_of(request, self.cfg.multitenancy_enabled)
        job = Job("tags", request.path, dict(request.query), self._headers(request))
        return _passed_on(self.pool.run(job))


def _may_hold(meta: BlockMeta, hex_id: str, seconds: tuple[int, int] | None) -> bool:
    """Whether a block may hold the trace, by the tests a querier applies before its bloom filter."""
    if not meta.min_id <= hex_id <= meta.max_id:
        return False
    return seconds is None or (
        meta.end_unix_nano >= seconds[0] * 10**9 and meta.start_unix_nano <= seconds[1] * 10**9
    )


def _combined(bodies: list[bytes], v2: bool, as_protobuf: bool) -> Response:
    """The trace from the jobs' protobuf answers (``TracesData``, each already one span per id).

    One answer (the common case: one block holds the trace) is passed on as it is, or converted once;
    several are decoded, combined and re-encoded, so that a span two of them returned counts once.
    """
    if len(bodies) == 1:
        if as_protobuf:  # v2: TraceByIDResponse, the trace as its field 1
            return Response(200, len_field(1, bodies[0]) if v2 else bodies[0], PROTOBUF)
        return trace_response(TracesData.FromString(bodies[0]), v2, as_protobuf)
    found: TracesData | None = None
    if bodies:
        tables = [decode_otlp(body).table for body in bodies]
        found = spans_to_traces_data(pa.concat_tables(tables, promote_options="permissive"))
    return trace_response(found, v2, as_protobuf)


def _passed_on(answer: Answer) -> Response:
    return Response(answer.status, answer.body, answer.content_type or TEXT)
