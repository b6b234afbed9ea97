"""Every role as a separate process on the test suite's S3 server: 3 ingesters (replication factor 3),
a distributor, 2 queriers behind a query-frontend, and a compactor. The OpenTelemetry SDK's OTLP
exporter sends 50k traces to the distributor; one ingester is SIGKILLed halfway; every acknowledged
trace is then found through the frontend with every span exactly once: while the ingesters still hold
the newest spans, from the blocks alone (three replicas of each span), and after the compactor merged
and deduplicated those blocks and deleted the inputs. In each phase one search lists every trace with
its spans, and 1,500 traces (those sent around the kill among them) are looked up by id: a lookup
costs tens of CPU-milliseconds against moto, so 50k of them would take the suite's whole budget."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.cluster.harness import Cluster, Role, make_cluster
from tests.conftest import S3Endpoint
from tracelake.backend import open_backend
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.config import TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.rpc import messages
from tracelake.rpc.client import IngesterClient
from tracelake.service import MASK
from tracelake.synth import SynthConfig, generate_request_bytes

# TRACELAKE_E2E_TRACES makes the run smaller while working on it; CI runs the 50k.
TRACES = int(os.environ.get("TRACELAKE_E2E_TRACES", "50000"))
PER_EXPORT = 250  # traces per OTLP request (750 spans)
# Traces looked up by id in each phase (at random, plus those sent around the kill); search lists all.
LOOKUPS = 1500
TENANT = "single-tenant"


def _make_traces(count: int) -> dict[bytes, list]:
    """``count`` traces of three spans each, made by the SDK; trace id -> its finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cluster-e2e", "0.1")
    for i in range(count):
        with tracer.start_as_current_span(f"POST /orders/{i}", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.method", "POST")
            root.set_attribute("order", i)
            with tracer.start_as_current_span("reserve stock", kind=SpanKind.CLIENT):
                pass
            with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as charge:
                charge.add_event("charged", {"amount": i})
    provider.shutdown()
    traces: dict[bytes, list] = defaultdict(list)
    for span in memory.get_finished_spans():
        traces[span.context.trace_id.to_bytes(16, "big")].append(span)
    return traces


def _span_ids(spans) -> Counter:
    return Counter(s.context.span_id.to_bytes(8, "big") for s in spans)


def _found(role: Role, trace_id: bytes) -> tuple[int, Counter]:
    """The span ids of the trace as the protobuf answer (OTLP's TracesData) holds them."""
    code, body = role.get(f"/api/traces/{trace_id.hex()}", {"Accept": "application/protobuf"})
    if code != 200:
        return code, Counter()
    trace = TracesData.FromString(body)
    return code, Counter(
        span.span_id for rs in trace.resource_spans for ss in rs.scope_spans for span in ss.spans
    )


def _found_json(role: Role, trace_id: bytes) -> tuple[int, Counter]:
    code, body = role.get(f"/api/v2/traces/{trace_id.hex()}")
    if code != 200:
        return code, Counter()
    trace = json.loads(body)["trace"]
    return code, Counter(
        base64.b64decode(span["spanId"])
        for rs in trace.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for span in ss.get("spans", [])
    )


def _check_every_trace(role: Role, acknowledged: dict[bytes, list], found=_found) -> list[str]:
    def check(item: tuple[bytes, list]) -> str | None:
        trace_id, spans = item
        code, got = found(role, trace_id)
        want = _span_ids(spans)
        return None if code == 200 and got == want else f"{trace_id.hex()}: {code} got {dict(got)}"

    newest_first = list(reversed(acknowledged.items()))  # while the newest are still in memory
    with ThreadPoolExecutor(6) as pool:
        return [p for p in pool.map(check, newest_first, chunksize=64) if p is not None]


def _check_by_search(frontend: Role, acknowledged: dict[bytes, list], since: float) -> list[str]:
    """Every trace through one search for all of them (jobs of blocks plus the ingesters'): each
    appears once, and its spanSet lists each of its spans once."""
    query = {
        "q": '{ resource.service.name = "checkout" }',
        "limit": str(len(acknowledged) + 100),
        "spss": "10",
        "start": str(int(since) - 60),
        "end": str(int(time.time()) + 60),
    }
    code, body = frontend.get("/api/search?" + urllib.parse.urlencode(query))
    assert code == 200, body[:500]
    problems: list[str] = []
    seen: Counter = Counter()
    for hit in json.loads(body)["traces"]:
        trace_id = bytes.fromhex(hit["traceID"].rjust(32, "0"))
        seen[trace_id] += 1
        (span_set,) = hit["spanSets"]
        got = Counter(bytes.fromhex(span["spanID"].rjust(16, "0")) for span in span_set["spans"])
        want = _span_ids(acknowledged.get(trace_id, []))
        if got != want or span_set["matched"] != want.total():
            problems.append(f"{trace_id.hex()}: matched {span_set['matched']} spans {dict(got)}")
    problems += [f"{t.hex()}: found {seen[t]} times" for t in acknowledged if seen[t] != 1]
    problems += [f"{t.hex()}: never sent" for t in seen if t not in acknowledged]
    return problems


def _sample(acknowledged: dict[bytes, list], seed: int) -> dict[bytes, list]:
    """``LOOKUPS`` traces: the first and last sent, those sent around the kill, the rest at random."""
    items = list(acknowledged.items())
    middle = len(items) // 2
    edges = items[:50] + items[middle - 2 * PER_EXPORT : middle + 2 * PER_EXPORT] + items[-50:]
    rest = random.Random(seed).sample(items, min(len(items), max(0, LOOKUPS - len(edges))))
    return dict(edges + rest)


def _check(frontend: Role, acknowledged: dict[bytes, list], since: float, seed: int) -> None:
    problems = _check_by_search(frontend, acknowledged, since)
    assert problems == [], (len(problems), problems[:5])
    problems = _check_every_trace(frontend, _sample(acknowledged, seed))
    assert problems == [], (len(problems), problems[:5])


def _holds_nothing_recent(ingester: Role) -> bool:
    client = IngesterClient(f"127.0.0.1:{ingester.ports['grpc']}")
    try:
        request = messages.encode_tenant(TENANT)
        spans = [m for m in client.recent_spans(request, timeout=5)]
        blocks = json.loads(client.recent_blocks(request, timeout=5))
        return not spans and not blocks
    finally:
        client.close()


def _send(cluster: Cluster, traces: dict[bytes, list], kill: Role) -> dict[bytes, list]:
    """Export every trace through the SDK's exporter; SIGKILL ``kill`` halfway. Returns the traces
    whose request was acknowledged."""
    items = list(traces.items())
    exporter = OTLPSpanExporter(endpoint=cluster.distributor.url("/v1/traces", "otlp_http"), timeout=20)
    acknowledged: dict[bytes, list] = {}
    for n, start in enumerate(range(0, len(items), PER_EXPORT)):
        if n == len(items) // PER_EXPORT // 2:
            kill.kill()  # halfway: one replica of every trace is gone, writes go on at quorum
        chunk = items[start : start + PER_EXPORT]
        if exporter.export([s for _, spans in chunk for s in spans]) == SpanExportResult.SUCCESS:
            acknowledged.update(chunk)
    exporter.shutdown()
    return acknowledged


def _stored(storage: dict) -> tuple[Counter, list]:
    """Every stored copy of every span id, and the live blocks' metas, read from the bucket."""
    config = TraceStorageConfig.model_validate(storage)
    db = TraceDB(open_backend(config), config)
    try:
        metas = list_blocks(db.backend, TENANT).metas
        spans = Counter(
            span_id
            for meta in metas
            for table in db.reader(meta).iter_spans()
            for span_id in table["span_id"].to_pylist()
        )
        return spans, metas
    finally:
        db.close()


def _wait(condition, timeout: float, cluster: Cluster, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not after {timeout}s\n{cluster.logs()}"
        time.sleep(0.5)


def _run(cluster: Cluster, storage: dict) -> None:
    since = time.time()
    traces = _make_traces(TRACES)
    killed = cluster.ingesters[0]
    acknowledged = _send(cluster, traces, killed)
    # Two of three replicas are a quorum: no request had to be refused.
    assert len(acknowledged) == TRACES, cluster.logs()
    assert cluster.distributor.metric("tracelake_distributor_spans_received_total") == 3 * TRACES
    frontend = cluster.frontend
    assert frontend is not None

    # 1. While the ingesters still hold the newest spans (memory, recent blocks) and blocks appear.
    _check(frontend, acknowledged, since, seed=1)
    dead = f"127.0.0.1:{killed.ports['grpc']}"
    failures = sum(
        q.metric("tracelake_ingester_client_failures_total", ingester=dead) for q in cluster.queriers
    )
    assert failures > 0  # the queriers did ask the dead ingester, and answered without it
    assert all(q.metric("tracelake_request_duration_seconds_count") > 0 for q in cluster.queriers)

    # The killed ingester comes back: it replays its WAL and writes what it held as blocks.
    killed.start().wait_ready()
    assert killed.metric("tracelake_ingester_wal_replay_records_total") > 0

    # 2. From the blocks alone: the ingesters flushed everything and forgot their recent blocks.
    _wait(lambda: all(_holds_nothing_recent(i) for i in cluster.ingesters), 60, cluster, "flushed")
    stored_before, blocks_before = _stored(storage)
    want = Counter(span_id for spans in acknowledged.values() for span_id in _span_ids(spans))
    assert set(stored_before) == set(want)
    assert stored_before.total() >= 2 * want.total()  # replicas: at least a quorum of copies each
    _check(frontend, acknowledged, since, seed=2)

    # 3. After compaction: the compactor merges each window's blocks into one, drops the duplicate
    # copies, and deletes the inputs; the queriers poll the new block list.
    compactor = cluster.start_compactor()

    def compacted() -> bool:
        _, metas = _stored(storage)
        windows = Counter(m.end_unix_nano // 10**10 for m in metas)  # compaction_window: 10s
        return all(n == 1 for n in windows.values()) and len(metas) < len(blocks_before)

    _wait(compacted, 240, cluster, "compaction")
    assert compactor.metric("tracelake_compactor_compaction_spans_deduplicated_total") > 0
    _wait(
        lambda: compactor.metric("tracelake_compactor_retention_deleted_total") > 0, 60, cluster, "deletion"
    )
    stored_after, blocks_after = _stored(storage)
    assert set(stored_after) == set(want)
    assert stored_after.total() < stored_before.total()
    time.sleep(2)  # four block-list polls of the queriers
    _check(frontend, acknowledged, since, seed=3)
    # The JSON answer agrees (a sample: the protobuf path above read every trace).
    sample = dict(list(acknowledged.items())[:: max(1, TRACES // 200)])
    assert _check_every_trace(frontend, sample, _found_json) == []
    print(
        f"blocks {len(blocks_before)} -> {len(blocks_after)}, stored span copies "
        f"{stored_before.total()} -> {stored_after.total()} for {want.total()} spans"
    )


def _check_status(cluster: Cluster, secret: str | None) -> None:
    for role in cluster.roles:
        if role.proc is None:
            continue
        status = role.status()
        assert status["target"] == role.command and status["ready"] is True
        if secret:
            assert secret not in json.dumps(status)
            if "storage" in status["config"]:
                assert status["config"]["storage"]["trace"]["s3"]["secret_key"] == MASK
    for role in (cluster.distributor, *cluster.queriers):
        ring = role.status()["ring"]
        assert ring["replication_factor"] == 3
        assert sorted(ring["members"]) == sorted(f"127.0.0.1:{i.ports['grpc']}" for i in cluster.ingesters)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_role_as_a_process_50k_traces_one_ingester_killed_found_once_before_and_after_compaction(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    storage = {"backend": "s3", "s3": s3_endpoint.storage_config().s3.model_dump(mode="json")}
    compaction = {
        "compaction": {
            "compaction_window": "10s",  # the windows close while the test runs
            "compaction_cycle": "1s",
            "compacted_block_retention": "3s",  # > six block-list polls of the queriers
        }
    }
    # The frontend plans a search's block jobs from its block list when the search starts; a block
    # flushed later is answered by its ingester until complete_block_timeout, which must outlast the
    # block-list poll plus the search (a search listing 50k traces takes seconds here).
    keep = {"ingester": {"complete_block_timeout": "20s"}}
    cluster = make_cluster(
        tmp_path, storage, queriers=2, frontend={}, compactor=compaction, extra=keep
    ).start()
    try:
        _check_status(cluster, s3_endpoint.secret_key)
        _run(cluster, storage)
    finally:
        cluster.stop()


def test_replication_factor_two_of_three_splits_requests_and_search_reads_replicas_once(
    tmp_path: Path,
) -> None:
    """Local backend in a shared directory; each request is split between different replica sets."""
    storage = {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}
    # Blocks are not cut while the test runs: search and tags answer from the ingesters over RPC.
    slow = {"ingester": {"trace_idle_period": "1m", "max_block_duration": "10m"}}
    cluster = make_cluster(tmp_path, storage, replication_factor=2, extra=slow, frontend={})
    cluster.start()
    try:
        traces = _make_traces(150)
        exporter = OTLPSpanExporter(endpoint=cluster.distributor.url("/v1/traces", "otlp_http"), timeout=20)
        items = list(traces.items())
        for start in range(0, len(items), 50):
            chunk = items[start : start + 50]
            assert exporter.export([s for _, spans in chunk for s in spans]) == SpanExportResult.SUCCESS
        exporter.shutdown()
        held = [i.metric("tracelake_distributor_spans_received_total") for i in cluster.ingesters]
        assert sum(held) == 2 * 3 * len(traces)  # every span on two of the three ingesters
        assert all(0 < n < 3 * len(traces) for n in held)  # and no ingester holds them all
        assert _check_every_trace(cluster.querier, traces) == []
        # The query-frontend in front of that querier: trace by id as shards of blocks plus an
        # ingester job, answered from the ingesters over RPC here.
        assert cluster.frontend is not None
        assert _check_every_trace(cluster.frontend, traces) == []

        code, body = cluster.querier.get(
            "/api/search?q=%7B%20name%20%3D%20%22charge%20card%22%20%7D&limit=500"
        )
        assert code == 200, body
        found = json.loads(body)["traces"]
        assert {bytes.fromhex(t["traceID"].rjust(32, "0")) for t in found} == set(traces)
        assert all(t["spanSets"][0]["matched"] == 1 for t in found)  # replicas counted once

        # Leaving hands the data off by flushing: SIGTERM writes everything held as blocks.
        for ingester in cluster.ingesters:
            assert ingester.stop() == 0, ingester.log()

        # No replica left: writes are refused with the status OTLP clients retry, reads with 503.
        request = urllib.request.Request(
            cluster.distributor.url("/v1/traces", "otlp_http"),
            data=next(generate_request_bytes(SynthConfig(traces=5, seed=3))),
            headers={"content-type": "application/x-protobuf"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 503 and refused.value.headers["retry-after"]
        code, _ = cluster.querier.get(f"/api/v2/traces/{next(iter(traces)).hex()}")
        assert code == 503
    finally:
        cluster.stop()
    stored, _ = _stored(storage)
    want = Counter({span_id: 2 for spans in traces.values() for span_id in _span_ids(spans)})
    assert stored == want  # every span in the blocks of exactly its two replicas


def test_a_hung_ingester_slows_neither_writes_nor_reads(tmp_path: Path) -> None:
    """SIGSTOP one of three ingesters (rf 3): it accepts connections and never answers. Writes are
    acknowledged on the other two, and lookups answered by them, without waiting for the RPC deadline
    (30 s here, so the bounds below are about waiting, not speed)."""
    storage = {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}
    slow = {
        "ingester": {"trace_idle_period": "1m", "max_block_duration": "10m"},
        "ingester_client": {"remote_timeout": "30s"},
    }
    cluster = make_cluster(tmp_path, storage, extra=slow).start()
    hung = cluster.ingesters[1]
    assert hung.proc is not None
    try:
        traces = _make_traces(60)
        items = list(traces.items())
        exporter = OTLPSpanExporter(endpoint=cluster.distributor.url("/v1/traces", "otlp_http"), timeout=20)
        assert exporter.export([s for _, spans in items[:30] for s in spans]) == SpanExportResult.SUCCESS
        hung.proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        assert exporter.export([s for _, spans in items[30:] for s in spans]) == SpanExportResult.SUCCESS
        write_seconds = time.monotonic() - started
        started = time.monotonic()
        problems = [p for p in (_check_one(cluster.querier, t, s) for t, s in items[::6]) if p]
        read_seconds = (time.monotonic() - started) / len(items[::6])
        exporter.shutdown()
        assert problems == []
        assert write_seconds < 10 and read_seconds < 10, (write_seconds, read_seconds)
    finally:
        hung.proc.send_signal(signal.SIGCONT)
        cluster.stop()


def _check_one(role: Role, trace_id: bytes, spans: list) -> str | None:
    code, got = _found(role, trace_id)
    return None if code == 200 and got == _span_ids(spans) else f"{trace_id.hex()}: {code} {dict(got)}"


def _post_trace(cluster: Cluster, trace_id: bytes, spans: int) -> list[bytes]:
    """One trace of ``spans`` spans with the given id, sent to the distributor; its span ids."""
    now = time.time_ns()
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    span_ids = [(i + 1).to_bytes(8, "big") for i in range(spans)]
    for span_id in span_ids:
        span = scope_spans.spans.add(trace_id=trace_id, span_id=span_id, name="late")
        span.start_time_unix_nano, span.end_time_unix_nano = now - 10**6, now
    post = urllib.request.Request(
        cluster.distributor.url("/v1/traces", "otlp_http"),
        data=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(post, timeout=30) as response:
        assert response.status == 200
    return span_ids


def _flushed_only(ingester: Role) -> bool:
    """The ingester holds no span in memory, and still answers for a block it flushed."""
    client = IngesterClient(f"127.0.0.1:{ingester.ports['grpc']}")
    try:
        request = messages.encode_tenant(TENANT)
        spans = list(client.recent_spans(request, timeout=5))
        return not spans and bool(json.loads(client.recent_blocks(request, timeout=5)))
    finally:
        client.close()


def test_a_block_flushed_after_the_frontends_last_poll_is_found_through_its_ingester(tmp_path: Path) -> None:
    """The frontend sends block jobs only for blocks its list says may hold the trace; its list can be
    a poll older than the queriers'. A block flushed since is answered by the ingester that wrote it
    (``complete_block_timeout`` > ``blocklist_poll``): found, with the ingesters' job alone."""
    storage = {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}
    cluster = make_cluster(
        tmp_path,
        storage,
        ingesters=1,
        replication_factor=1,
        extra={"ingester": {"complete_block_timeout": "10m"}},
        frontend={},
        frontend_extra={"storage": {"trace": {"blocklist_poll": "1h"}}},  # listed once, at first use
    ).start()
    try:
        (ingester,) = cluster.ingesters
        assert cluster.frontend is not None
        early = _post_trace(cluster, bytes.fromhex("f0" * 16), 2)
        _wait(lambda: bool(_stored(storage)[1]), 60, cluster, "a first block")
        code, found = _found(cluster.frontend, bytes.fromhex("f0" * 16))  # the frontend lists the blocks
        assert code == 200 and set(found) == set(early)

        late_id = bytes(15) + b"\x01"  # below every block the frontend listed: none may hold it
        late = _post_trace(cluster, late_id, 3)
        _wait(lambda: _flushed_only(ingester), 60, cluster, "the late trace flushed")
        assert any(m.min_id == late_id.hex() for m in _stored(storage)[1])
        time.sleep(1.5)  # the queriers' lists (500ms polls) have the new block; the frontend's has not

        jobs = cluster.frontend.metric("tracelake_query_frontend_jobs_total", op="trace_by_id")
        code, found = _found(cluster.frontend, late_id)
        assert code == 200 and found == Counter(late), cluster.logs()
        after = cluster.frontend.metric("tracelake_query_frontend_jobs_total", op="trace_by_id")
        assert after - jobs == 1  # the ingesters' job: no block job, the frontend knows no such block
    finally:
        cluster.stop()


def test_a_querier_that_knows_a_new_ingester_still_finds_traces_on_their_former_replicas(
    tmp_path: Path,
) -> None:
    """Scale-out: the distributor still writes to two ingesters (rf 1) while the querier already
    lists a third, new one. Under the new ring about a third of the traces belong to the new
    ingester, which holds none of them: a querier asking only the current replicas would miss them
    until the old owners flushed. Right after a ring change every ingester is asked."""
    storage = {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}
    slow = {"ingester": {"trace_idle_period": "1m", "max_block_duration": "10m"}}
    cluster = make_cluster(tmp_path, storage, ingesters=3, replication_factor=1, extra=slow)
    old_members = cluster.distributor.config["ingester"]["lifecycler"]["ring"]["members"][:2]
    cluster.distributor.config["ingester"]["lifecycler"]["ring"]["members"] = old_members
    cluster.distributor.config_path.write_text(yaml.safe_dump(cluster.distributor.config))
    cluster.start()
    try:
        traces = _make_traces(90)
        exporter = OTLPSpanExporter(endpoint=cluster.distributor.url("/v1/traces", "otlp_http"), timeout=20)
        assert exporter.export([s for spans in traces.values() for s in spans]) == SpanExportResult.SUCCESS
        exporter.shutdown()
        held = [i.metric("tracelake_distributor_spans_received_total") for i in cluster.ingesters]
        assert held[2] == 0 and sum(held) == 3 * len(traces)  # the new ingester holds nothing
        assert _check_every_trace(cluster.querier, traces) == []
    finally:
        cluster.stop()
