"""``tracelake query-frontend`` in front of two querier processes over one store, all real processes
on loopback: trace by ID (sharded by block id), search (jobs of blocks, newest first) and tags answer
exactly what a querier alone answers — also after one querier is SIGKILLed."""

from __future__ import annotations

import itertools
import json
import random
import time
from urllib.parse import urlencode

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.querier.test_trace_by_id_api import HOLD, get
from tests.server.harness import Server, _merge
from tests.server.sender import post
from tracelake.backend import open_backend
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.config import DEFAULT_TENANT, TraceStorageConfig
from tracelake.synth import SynthConfig, generate_request_bytes

NOW = int(time.time())
RANGE = {"start": str(NOW - 7200), "end": str(NOW + 7200)}
QUERIES = [
    {"q": "{ .http.status_code = 500 }", "limit": "20", "spss": "2"},
    {"q": '{ resource.service.name = "checkout" } >> { kind = client }', "limit": "7"},
    {"tags": "service.name=cart", "limit": "15"},
    {"minDuration": "50ms", "limit": "10"},
    {"limit": "500"},
]


def _config(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        _merge(out, json.loads(json.dumps(part)))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("frontend")
    shared = {"storage": {"trace": {"local": {"path": str(root / "blocks")}, "blocklist_poll": "500ms"}}}
    for name in ("writer", "q0", "q1", "fe"):
        (root / name).mkdir()
    writer = Server(root / "writer", receivers=("otlp_http",), extra=_config(HOLD, shared))
    trace_ids: list[bytes] = []
    for seed in (1, 2, 3):  # three flushes: three blocks
        writer.start()
        payload = next(generate_request_bytes(SynthConfig(traces=120, traces_per_request=120, seed=seed)))
        assert post(writer.ports["otlp_http"], payload) == 200
        trace_ids += list({s.trace_id for rs in ExportTraceServiceRequest.FromString(payload).resource_spans
                           for ss in rs.scope_spans for s in ss.spans})  # fmt: skip
        assert writer.stop() == 0
    queriers = [Server(root / f"q{i}", receivers=(), extra=shared).start() for i in range(2)]
    frontend_cfg = {
        "query_frontend": {
            "querier_addresses": [f"127.0.0.1:{q.ports['api']}" for q in queriers],
            "trace_by_id": {"query_shards": 3, "blocks_per_shard": 1},  # a shard per block
            "search": {"target_bytes_per_job": 1, "concurrent_jobs": 2},  # one block per job
        }
    }
    frontend = Server(
        root / "fe", receivers=(), extra=_config(shared, frontend_cfg), command="query-frontend"
    )
    frontend.start()
    try:
        yield frontend, queriers, trace_ids
    finally:
        assert frontend.stop() == 0  # SIGTERM: a clean exit
        for server in queriers:
            if server.proc and server.proc.poll() is None:
                server.stop()


def _same_answers(frontend: Server, querier: Server, trace_ids: list[bytes]) -> None:
    for trace_id in random.Random(5).sample(trace_ids, 15):
        for path, accept in itertools.product(
            (f"/api/traces/{trace_id.hex()}", f"/api/v2/traces/{trace_id.hex()}"),
            ("application/protobuf", "application/json"),
        ):
            via_frontend = get(frontend, path, {"Accept": accept})
            direct = get(querier, path, {"Accept": accept})
            assert via_frontend[0] == direct[0] == 200
            if accept == "application/json":
                assert json.loads(via_frontend[2]) == json.loads(direct[2])
            else:
                assert via_frontend[2] == direct[2]
    for params in QUERIES:
        path = "/api/search?" + urlencode({**params, **RANGE})
        via_frontend, direct = get(frontend, path), get(querier, path)
        assert via_frontend[0] == direct[0] == 200, via_frontend[2][:300]
        ours, theirs = json.loads(via_frontend[2]), json.loads(direct[2])
        assert ours["traces"] == theirs["traces"] and ours["traces"], params
    for path in (
        "/api/v2/search/tags?" + urlencode(RANGE),
        "/api/v2/search/tag/resource.service.name/values?" + urlencode(RANGE),
    ):
        ours, theirs = json.loads(get(frontend, path)[2]), json.loads(get(querier, path)[2])
        ours.pop("metrics"), theirs.pop("metrics")  # bytes read differ: a querier keeps a block's names
        assert ours == theirs


def test_frontend_answers_as_one_querier_does(cluster) -> None:
    frontend, queriers, trace_ids = cluster
    _same_answers(frontend, queriers[0], trace_ids)
    body = json.loads(get(frontend, "/api/search?" + urlencode({"limit": "5", **RANGE}))[2])
    assert body["metrics"]["totalBlocks"] == 3 and body["metrics"]["totalJobs"] == 4  # recent + 3 blocks
    assert get(frontend, "/api/traces/0123456789abcdef0123456789abcdef")[0] == 404
    assert json.loads(get(frontend, "/api/v2/traces/0123456789abcdef0123456789abcdef")[2]) == {"trace": {}}
    status, _, body = get(frontend, "/api/traces/not-hex")
    assert status == 400 and b"hex characters" in body
    status, _, body = get(frontend, "/api/search?q=%7B%20nope")
    assert status == 400 and b"parse error" in body
    assert _jobs(frontend) >= 15 * 4 * 2  # the ingesters and at least one block per lookup
    status = json.loads(get(frontend, "/status")[2])
    assert status["ready"] and len(status["ring"]["queriers"]) == 2


def test_a_dead_querier_changes_nothing_but_retries(cluster) -> None:
    frontend, queriers, trace_ids = cluster

    def retries() -> float:
        return sum(
            frontend.metric("tracelake_query_frontend_retries_total", op=op)
            for op in ("trace_by_id", "search")
        )

    before = retries()
    queriers[1].kill()
    _same_answers(frontend, queriers[0], trace_ids)
    assert retries() > before  # jobs sent to the dead querier were sent again


def _jobs(frontend: Server) -> float:
    return frontend.metric("tracelake_query_frontend_jobs_total", op="trace_by_id")


def _metas(frontend: Server) -> list[BlockMeta]:
    backend = open_backend(TraceStorageConfig(local={"path": str(frontend.root.parent / "blocks")}))
    try:
        return list_blocks(backend, DEFAULT_TENANT).metas
    finally:
        backend.close()


def _jobs_of(frontend: Server, path: str, status: int) -> float:
    """The trace-by-id jobs the frontend sent for one lookup of ``path``."""
    before = _jobs(frontend)
    assert get(frontend, path, {"Accept": "application/protobuf"})[0] == status
    return _jobs(frontend) - before


def test_block_jobs_only_for_shards_holding_a_block_that_may_hold_the_trace(cluster) -> None:
    """Ingesters plus one shard per candidate block (``blocks_per_shard`` 1, up to 3): blocks whose
    id range holds the trace id and whose time range meets ``start``/``end``; none without one."""
    frontend, _, trace_ids = cluster
    metas = _metas(frontend)
    assert len(metas) == 3
    for trace_id in random.Random(7).sample(trace_ids, 10):
        hex_id = trace_id.hex()
        candidates = sum(m.min_id <= hex_id <= m.max_id for m in metas)
        assert _jobs_of(frontend, f"/api/traces/{hex_id}", 200) == 1 + candidates
    below_every_block = "00000000000000000000000000000001"
    assert all(m.min_id > below_every_block for m in metas)
    assert _jobs_of(frontend, f"/api/traces/{below_every_block}", 404) == 1  # the ingesters only
    before_every_block = min(m.start_unix_nano for m in metas) // 10**9 - 3600
    window = urlencode({"start": before_every_block - 60, "end": before_every_block})
    assert _jobs_of(frontend, f"/api/traces/{trace_ids[0].hex()}?{window}", 404) == 1
