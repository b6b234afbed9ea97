"""The roles as separate processes: 3 ingesters (replication factor 3), a distributor and a querier on
the test suite's S3 server. The OpenTelemetry SDK's OTLP exporter sends to the distributor; one ingester
is SIGKILLed halfway; every acknowledged trace is then found through the querier with every span once,
first while the ingesters still hold the spans, then from the blocks alone."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.cluster.harness import Cluster, Role, make_cluster
from tests.conftest import S3Endpoint, free_port
from tracelake.rpc import messages
from tracelake.rpc.client import IngesterClient
from tracelake.service import MASK
from tracelake.synth import SynthConfig, generate_request_bytes

TRACES = 1200
PER_EXPORT = 40  # traces per OTLP request
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


def _found(querier: Role, trace_id: bytes) -> tuple[int, Counter]:
    code, body = querier.get(f"/api/v2/traces/{trace_id.hex()}")
    if code != 200:
        return code, Counter()
    trace = json.loads(body)["trace"]
    return code, Counter(
        base64.b64decode(span["spanId"])
        for rs in trace.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for span in ss.get("spans", [])
    )


def _check_every_trace(querier: Role, acknowledged: dict[bytes, list]) -> list[str]:
    def check(item: tuple[bytes, list]) -> str | None:
        trace_id, spans = item
        code, got = _found(querier, trace_id)
        want = _span_ids(spans)
        return None if code == 200 and got == want else f"{trace_id.hex()}: {code} got {dict(got)}"

    newest_first = list(reversed(acknowledged.items()))  # while the newest are still in memory
    with ThreadPoolExecutor(4) as pool:
        return [p for p in pool.map(check, newest_first) if p is not None]


def _holds_nothing_recent(ingester: Role) -> bool:
    client = IngesterClient(f"127.0.0.1:{ingester.ports['grpc']}")
    try:
        request = messages.encode_tenant(TENANT)
        spans = [m for m in client.recent_spans(request, timeout=5)]
        blocks = json.loads(client.recent_blocks(request, timeout=5))
        return not spans and not blocks
    finally:
        client.close()


def _run(cluster: Cluster) -> None:
    traces = _make_traces(TRACES)
    items = list(traces.items())
    exporter = OTLPSpanExporter(endpoint=cluster.distributor.url("/v1/traces", "otlp_http"), timeout=20)
    acknowledged: dict[bytes, list] = {}
    killed = cluster.ingesters[0]
    for n, start in enumerate(range(0, len(items), PER_EXPORT)):
        if n == len(items) // PER_EXPORT // 2:
            killed.kill()  # halfway: one replica of every trace is gone, writes go on at quorum
        chunk = items[start : start + PER_EXPORT]
        if exporter.export([s for _, spans in chunk for s in spans]) == SpanExportResult.SUCCESS:
            acknowledged.update(chunk)
    exporter.shutdown()
    # Two of three replicas are a quorum: no request had to be refused.
    assert len(acknowledged) == TRACES, cluster.logs()
    assert cluster.distributor.metric("tracelake_distributor_spans_received_total") == 3 * TRACES

    # While the ingesters still hold the newest spans (memory, recent blocks) and blocks appear.
    problems = _check_every_trace(cluster.querier, acknowledged)
    assert problems == [], problems[:5]
    dead = f"127.0.0.1:{killed.ports['grpc']}"
    assert cluster.querier.metric("tracelake_ingester_client_failures_total", ingester=dead) > 0

    # The killed ingester comes back: it replays its WAL and writes what it held as blocks, so those
    # spans are now stored a third time; the querier must still return each once.
    killed.start().wait_ready()
    assert killed.metric("tracelake_ingester_wal_replay_records_total") > 0

    # From the blocks alone: the ingesters flushed everything and forgot their recent blocks.
    deadline = time.monotonic() + 30
    while not all(_holds_nothing_recent(i) for i in cluster.ingesters):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.3)
    problems = _check_every_trace(cluster.querier, acknowledged)
    assert problems == [], problems[:5]


def _check_status(cluster: Cluster, secret: str | None) -> None:
    for role in cluster.roles:
        status = role.status()
        assert status["target"] == role.command and status["ready"] is True
        if secret:
            assert status["config"]["storage"]["trace"]["s3"]["secret_key"] == MASK
            assert secret not in json.dumps(status)
    for role in (cluster.distributor, cluster.querier):
        ring = role.status()["ring"]
        assert ring["replication_factor"] == 3
        assert sorted(ring["members"]) == sorted(f"127.0.0.1:{i.ports['grpc']}" for i in cluster.ingesters)


@pytest.mark.slow
def test_three_ingesters_one_killed_every_acknowledged_trace_found_once_on_s3(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    s3 = s3_endpoint.storage_config().s3.model_dump(mode="json")
    cluster = make_cluster(tmp_path, {"backend": "s3", "s3": s3}).start()
    try:
        _check_status(cluster, s3_endpoint.secret_key)
        _run(cluster)
    finally:
        cluster.stop()


def test_replication_factor_two_of_three_splits_requests_and_search_reads_replicas_once(
    tmp_path: Path,
) -> None:
    """Local backend in a shared directory; each request is split between different replica sets."""
    storage = {"backend": "local", "local": {"path": str(tmp_path / "blocks")}}
    # Blocks are not cut while the test runs: search and tags answer from the ingesters over RPC.
    slow = {"ingester": {"trace_idle_period": "1m", "max_block_duration": "10m"}}
    cluster = make_cluster(tmp_path, storage, replication_factor=2, extra=slow)
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
        port = free_port()
        frontend_cfg = {
            "server": {"http_listen_address": "127.0.0.1", "http_listen_port": port},
            "query_frontend": {"querier_addresses": [f"127.0.0.1:{cluster.querier.ports['api']}"]},
        }
        frontend = Role("query-frontend", "query-frontend", tmp_path, frontend_cfg, {"api": port}).start()
        try:
            frontend.wait_ready()
            assert _check_every_trace(frontend, traces) == []
        finally:
            frontend.stop()

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
    stored = _stored_span_ids(tmp_path / "blocks")
    want = Counter({span_id: 2 for spans in traces.values() for span_id in _span_ids(spans)})
    assert stored == want  # every span in the blocks of exactly its two replicas


def _stored_span_ids(path: Path) -> Counter:
    from tracelake.backend import open_backend
    from tracelake.blocklist.tenant_index import list_blocks
    from tracelake.config import TraceStorageConfig
    from tracelake.db import TraceDB

    storage = TraceStorageConfig.model_validate({"backend": "local", "local": {"path": str(path)}})
    db = TraceDB(open_backend(storage), storage)
    try:
        return Counter(
            span_id
            for meta in list_blocks(db.backend, TENANT).metas
            for table in db.reader(meta).iter_spans()
            for span_id in table["span_id"].to_pylist()
        )
    finally:
        db.close()
