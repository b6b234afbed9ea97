"""Search results: what one source (a block, the ingester's memory) found, the newest-first collector
that combines sources and says when to stop, and Tempo's JSON for them (contract §2.3)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from tracelake.traceql.evaluate import TypedValue

ROOT_NOT_YET_RECEIVED = "<root span not yet received>"


@dataclass
class SpanHit:
    span_id: bytes
    name: str
    start_ns: int
    duration_ns: int
    attributes: list[tuple[str, TypedValue]] = field(default_factory=list)
    row: int = -1  # row in the block's data.parquet while its other fields are still to be read


@dataclass
class TraceHit:
    trace_id: bytes
    root_service_name: str | None
    root_span_name: str | None
    start_ns: int
    duration_ns: int
    spans: list[SpanHit] = field(default_factory=list)  # at most spss of the matched spans
    matched: int = 0
    service_stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # service -> (spans, errors)

    def merge(self, other: TraceHit, spss: int) -> None:
        """The same trace found in another source (an ingester and a block, two blocks)."""
        end = max(self.start_ns + self.duration_ns, other.start_ns + other.duration_ns)
        self.start_ns = min(self.start_ns, other.start_ns)
        self.duration_ns = end - self.start_ns
        if self.root_service_name is None:
            self.root_service_name, self.root_span_name = other.root_service_name, other.root_span_name
        seen = {s.span_id for s in self.spans}
        new = [s for s in other.spans if s.span_id not in seen]
        self.spans = (self.spans + new)[:spss]
        self.matched += len([s for s in other.spans if s.span_id not in seen]) + max(
            0, other.matched - len(other.spans)
        )
        for service, (spans, errors) in other.service_stats.items():
            old = self.service_stats.get(service, (0, 0))
            self.service_stats[service] = (max(old[0], spans), max(old[1], errors))


@dataclass
class SearchMetrics:
    inspected_traces: int = 0
    inspected_bytes: int = 0
    total_blocks: int = 0
    completed_jobs: int = 0
    total_jobs: int = 0
    total_block_bytes: int = 0


class Collector:
    """Keeps the ``limit`` newest matching traces (by start) across sources.

    Sources are searched newest first; ``done(newest_start_left)`` tells the caller that nothing left
    can enter the result because every remaining source starts before the oldest trace kept.
    """

    def __init__(self, limit: int, spss: int) -> None:
        self.limit = limit
        self.spss = spss
        self.hits: dict[bytes, TraceHit] = {}

    def add(self, hit: TraceHit) -> None:
        old = self.hits.get(hit.trace_id)
        if old is None:
            self.hits[hit.trace_id] = hit
        else:
            old.merge(hit, self.spss)

    def kth_newest_start(self) -> int | None:
        if len(self.hits) < self.limit:
            return None
        return heapq.nlargest(self.limit, (h.start_ns for h in self.hits.values()))[-1]

    def done(self, newest_start_left: int) -> bool:
        kth = self.kth_newest_start()
        return kth is not None and newest_start_left < kth

    def results(self) -> list[TraceHit]:
        return sorted(self.hits.values(), key=lambda h: (-h.start_ns, h.trace_id))[: self.limit]


def _value_json(typed: TypedValue) -> dict:
    kind, value = typed
    if kind == "intValue":
        return {"intValue": str(value)}
    return {kind: value}


def _span_json(span: SpanHit) -> dict:
    out: dict = {
        "spanID": span.span_id.hex(),
        "name": span.name,
        "startTimeUnixNano": str(span.start_ns),
        "durationNanos": str(span.duration_ns),
    }
    if span.attributes:
        out["attributes"] = [{"key": k, "value": _value_json(v)} for k, v in span.attributes]
    return out


def trace_json(hit: TraceHit, traceql: bool) -> dict:
    """One entry of ``traces``: hex id without leading zeros, start as a string, ``durationMs``."""
    out: dict = {
        "traceID": hit.trace_id.hex().lstrip("0") or "0",
        "rootServiceName": hit.root_service_name or ROOT_NOT_YET_RECEIVED,
    }
    if hit.root_span_name:
        out["rootTraceName"] = hit.root_span_name
    out["startTimeUnixNano"] = str(hit.start_ns)
    duration_ms = hit.duration_ns // 1_000_000
    if duration_ms:
        out["durationMs"] = duration_ms
    if traceql:
        span_set = {"spans": [_span_json(s) for s in hit.spans], "matched": hit.matched}
        out["spanSet"] = span_set
        out["spanSets"] = [span_set]
        out["serviceStats"] = {
            service: {"spanCount": spans, **({"errorCount": errors} if errors else {})}
            for service, (spans, errors) in sorted(hit.service_stats.items())
        }
    return out


def search_json(hits: list[TraceHit], metrics: SearchMetrics, traceql: bool) -> dict:
    m: dict = {}
    if metrics.inspected_traces:
        m["inspectedTraces"] = metrics.inspected_traces
    if metrics.inspected_bytes:
        m["inspectedBytes"] = str(metrics.inspected_bytes)
    if metrics.total_blocks:
        m["totalBlocks"] = metrics.total_blocks
    m["completedJobs"] = metrics.completed_jobs
    m["totalJobs"] = metrics.total_jobs
    if metrics.total_block_bytes:
        m["totalBlockBytes"] = str(metrics.total_block_bytes)
    return {"traces": [trace_json(h, traceql) for h in hits], "metrics": m}


def _value_from_json(value: dict) -> TypedValue | None:
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return (kind, value[kind])
    if "intValue" in value:
        return ("intValue", int(value["intValue"]))
    return None


def hit_from_json(obj: dict) -> TraceHit:
    """One entry of a search answer back into a TraceHit (a query-frontend combining queriers'
    answers). ``durationMs`` is all the duration there is: kept to the millisecond."""
    hit = TraceHit(
        trace_id=bytes.fromhex(obj["traceID"].rjust(32, "0")),
        root_service_name=None
        if obj.get("rootServiceName") == ROOT_NOT_YET_RECEIVED
        else obj.get("rootServiceName"),
        root_span_name=obj.get("rootTraceName"),
        start_ns=int(obj["startTimeUnixNano"]),
        duration_ns=int(obj.get("durationMs", 0)) * 1_000_000,
    )
    span_sets = obj.get("spanSets") or ([obj["spanSet"]] if "spanSet" in obj else [])
    for span_set in span_sets[:1]:
        hit.matched = int(span_set.get("matched", 0))
        for span in span_set.get("spans", []):
            attributes = []
            for kv in span.get("attributes", []):
                typed = _value_from_json(kv.get("value", {}))
                if typed is not None:
                    attributes.append((kv["key"], typed))
            hit.spans.append(
                SpanHit(
                    span_id=bytes.fromhex(span["spanID"]),
                    name=span.get("name", ""),
                    start_ns=int(span["startTimeUnixNano"]),
                    duration_ns=int(span["durationNanos"]),
                    attributes=attributes,
                )
            )
    for service, stats in (obj.get("serviceStats") or {}).items():
        hit.service_stats[service] = (int(stats.get("spanCount", 0)), int(stats.get("errorCount", 0)))
    return hit


def metrics_from_json(obj: dict) -> SearchMetrics:
    return SearchMetrics(
        inspected_traces=int(obj.get("inspectedTraces", 0)),
        inspected_bytes=int(obj.get("inspectedBytes", 0)),
        total_blocks=int(obj.get("totalBlocks", 0)),
        completed_jobs=int(obj.get("completedJobs", 0)),
        total_jobs=int(obj.get("totalJobs", 0)),
        total_block_bytes=int(obj.get("totalBlockBytes", 0)),
    )
