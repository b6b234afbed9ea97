"""Microservices scaling on this machine (issue 6's figure): ingest spans/s with 1, 2 and 4 ingester
processes behind one distributor, and trace by ID p50/p99 with 1, 2 and 4 queriers behind one
query-frontend, with the CPU each role used, so that the cost of each role per span and per lookup
is known and the scaling curve is visible.

    python benchmarks/scaling_bench.py [--quick] [--spans 1000000] [--senders 4]
        [--traces-per-request 100] [--ingesters 1,2,4] [--replication-factor 1]
        [--queriers 1,2,4] [--lookups 300] [--clients 4]

Every role is its own process (``tracelake --config X.yaml <role>``) on loopback over a local
directory as the object store. CPU-seconds are utime+stime from ``/proc`` between the start and the
end of the timed phase (process start-up is excluded); they are the robust figure on a shared
machine, wall-clock rates are not.

Ingest: requests of 100 traces of 10 spans (``--traces-per-request``) are generated once, then
sent as fast as they are accepted by ``--senders`` processes over keep-alive OTLP/HTTP, retrying
429/503. Each ingester count runs with ``--replication-factor`` (1 by default); one more row is 3
ingesters with rf 3, Tempo's production shape. Ingesters cut blocks while receiving
(max_block_duration 5s) and are then SIGTERMed, which writes everything they still hold: "incl.
blocks" is the whole cost of a span in the ingesters.

Trace by ID: one data set of ``--query-blocks`` blocks written straight to the store, two idle
ingesters in the ring (each lookup asks them, as it does in production), then ``--clients`` threads
look up random present trace ids through a query-frontend in front of 1, 2, 4 queriers, and, as the
baseline, at one querier directly. Warm: each row first runs untimed lookups (blooms, footers).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _cluster import Launcher, Role, free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.synth import SynthConfig, generate_request_bytes

SPANS_PER_TRACE = (10, 10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _table(head: list[str], rows: list[list[str]]) -> None:
    """A markdown table, columns as wide as their widest cell; the first left-aligned."""
    widths = [max(len(c) for c in column) for column in zip(head, *rows, strict=True)]
    cells = [[c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
             for row in [head, *rows]]  # fmt: skip
    print("| " + " | ".join(cells[0]) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(row) + " |")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


# ------------------------------------------------------------------------------------------------
# Configs: what every role shares, and each role's own part.


def _common(root: Path, members: list[str], rf: int) -> dict[str, Any]:
    return {
        "storage": {"trace": {"local": {"path": str(root / "blocks")}, "blocklist_poll": "5s"}},
        "ingester": {
            "lifecycler": {"ring": {"replication_factor": rf, "members": members}},
            "trace_idle_period": "2s",  # as ingest_bench: blocks are cut while receiving
            "max_block_duration": "5s",
            "flush_check_period": "1s",
            "complete_block_timeout": "10s",
        },
        "overrides": {"ingestion_rate_limit_bytes": 0, "ingestion_burst_size_bytes": 0},
        "server": {"http_listen_address": "127.0.0.1", "graceful_shutdown_timeout": "300s"},
    }


def _with(common: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """``common`` with ``sections`` merged in one level deep (a role's ports, WAL path ...)."""
    out = {key: dict(value) for key, value in common.items()}
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def _start_ingesters(
    launcher: Launcher, root: Path, count: int, rf: int, fsync: str
) -> tuple[list[Role], dict[str, Any]]:
    grpc_ports = [free_port() for _ in range(count)]
    common = _common(root, [f"127.0.0.1:{p}" for p in grpc_ports], rf)
    ingesters = []
    for i, grpc_port in enumerate(grpc_ports):
        storage = {
            "trace": {**common["storage"]["trace"], "wal": {"path": str(root / f"wal-{i}"), "fsync": fsync}}
        }
        server = {"http_listen_port": free_port(), "grpc_listen_port": grpc_port}
        ingesters.append(
            launcher.start(f"ingester-{i}", "ingester", _with(common, server=server, storage=storage))
        )
    return ingesters, common


# ------------------------------------------------------------------------------------------------
# Ingest.


@dataclass
class SendResult:
    spans: int = 0
    failed: int = 0
    retries: int = 0
    cpu: float = 0.0


def _send(port: int, payloads: list[tuple[bytes, int]], go: Any, out: Any) -> None:
    """One sender process: post its share as fast as it is accepted, as an OTLP exporter retries."""
    result = SendResult()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    go.wait()
    started = time.process_time()
    for payload, spans in payloads:
        for _attempt in range(200):
            try:
                conn.request("POST", "/v1/traces", payload, {"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                result.retries += 1
                time.sleep(0.1)
                continue
            if response.status in (429, 503):
                result.retries += 1
                time.sleep(float(response.getheader("Retry-After") or 1))
                continue
            break
        if response.status == 200:
            result.spans += spans
        else:
            result.failed += 1
    result.cpu = time.process_time() - started
    out.put(result)


def _payloads(spans: int, per_request: int) -> list[tuple[bytes, int]]:
    """Request bodies of ``per_request`` traces and their span counts, generated once."""
    traces = max(per_request, spans // SPANS_PER_TRACE[0])
    cfg = SynthConfig(traces=traces, spans_per_trace=SPANS_PER_TRACE, traces_per_request=per_request, seed=6)
    out = []
    for payload in generate_request_bytes(cfg):
        request = ExportTraceServiceRequest.FromString(payload)
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        out.append((payload, count))
    return out


@dataclass
class IngestRow:
    ingesters: int
    rf: int
    spans: int
    failed: int
    retries: int
    wall: float
    distributor_cpu: float
    ingesters_cpu: float
    ingesters_cpu_total: float
    senders_cpu: float
    blocks: int


def run_ingest(
    root: Path, count: int, rf: int, payloads: list[tuple[bytes, int]], senders: int, fsync: str
) -> IngestRow:
    root.mkdir()
    with Launcher(root) as launcher:
        ingesters, common = _start_ingesters(launcher, root, count, rf, fsync)
        otlp = free_port()
        receivers = {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}}
        distributor = launcher.start(
            "distributor",
            "distributor",
            _with(common, server={"http_listen_port": free_port()}, distributor={"receivers": receivers}),
        )
        for role in [*ingesters, distributor]:
            role.wait_ready()
        ctx = mp.get_context("fork")  # the payloads are inherited, not pickled
        go, queue = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_send, args=(otlp, payloads[i::senders], go, queue), daemon=True)
            for i in range(senders)
        ]
        for proc in procs:
            proc.start()
        before = {role.name: role.cpu() for role in [*ingesters, distributor]}
        started = time.perf_counter()
        go.set()
        results: list[SendResult] = [queue.get() for _ in procs]
        wall = time.perf_counter() - started
        after = {role.name: role.cpu() for role in [*ingesters, distributor]}
        for proc in procs:
            proc.join()
        distributor.stop()
        total = sum(role.stop() - before[role.name] for role in ingesters)  # SIGTERM: writes all it holds
        return IngestRow(
            ingesters=count,
            rf=rf,
            spans=sum(r.spans for r in results),
            failed=sum(r.failed for r in results),
            retries=sum(r.retries for r in results),
            wall=wall,
            distributor_cpu=after["distributor"] - before["distributor"],
            ingesters_cpu=sum(after[r.name] - before[r.name] for r in ingesters),
            ingesters_cpu_total=total,
            senders_cpu=sum(r.cpu for r in results),
            blocks=sum(1 for _ in (root / "blocks").rglob("meta.json")),
        )


def print_ingest(rows: list[IngestRow], args: argparse.Namespace) -> None:
    print(
        f"\nIngest: {args.senders} sender processes, OTLP/HTTP protobuf, {args.traces_per_request} traces x "
        f"{SPANS_PER_TRACE[0]} spans per request, WAL fsync={args.fsync}; CPU-s while sending, and the "
        "ingesters' incl. writing every block after SIGTERM\n"
    )
    head = [
        "ingesters", "rf", "spans", "wall s", "spans/s", "distrib. CPU-s", "ingesters CPU-s",
        "incl. blocks", "senders CPU-s", "cores busy", "distrib. µs/span", "ingesters µs/span",
        "incl. blocks µs/span", "blocks", "failed/retried",
    ]  # fmt: skip
    cells = []
    for r in rows:
        per = 1e6 / max(r.spans, 1)
        busy = (r.distributor_cpu + r.ingesters_cpu + r.senders_cpu) / r.wall
        cells.append([
            f"{r.ingesters}", f"{r.rf}", f"{r.spans:,}", f"{r.wall:.1f}", f"{r.spans / r.wall:,.0f}",
            f"{r.distributor_cpu:.1f}", f"{r.ingesters_cpu:.1f}", f"{r.ingesters_cpu_total:.1f}",
            f"{r.senders_cpu:.1f}", f"{busy:.2f}", f"{r.distributor_cpu * per:.1f}",
            f"{r.ingesters_cpu * per:.1f}", f"{r.ingesters_cpu_total * per:.1f}", f"{r.blocks}",
            f"{r.failed}/{r.retries}",
        ])  # fmt: skip
    _table(head, cells)


# ------------------------------------------------------------------------------------------------
# Trace by ID.


def write_query_blocks(root: Path, blocks: int, traces: int) -> tuple[list[str], int]:
    """``blocks`` blocks straight into the store, as ingesters leave them (no tenant index); returns
    the trace ids (hex) and the span count."""
    import pyarrow as pa

    from tracelake.backend import open_backend
    from tracelake.codec.decode import decode_otlp
    from tracelake.config import DEFAULT_TENANT, LocalStorageConfig, TraceStorageConfig
    from tracelake.db import TraceDB

    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(root / "blocks")), blocklist_poll=3600)
    db = TraceDB(open_backend(cfg), cfg)
    ids: set[bytes] = set()
    spans_total = 0
    for block in range(blocks):
        synth = SynthConfig(traces=max(1, traces // blocks), seed=1000 + block)
        spans = pa.concat_tables([decode_otlp(p).table for p in generate_request_bytes(synth)])
        db.write_block(DEFAULT_TENANT, spans, update_index=False)
        ids.update(spans["trace_id"].to_pylist())
        spans_total += spans.num_rows
    db.close()
    return sorted(i.hex() for i in ids), spans_total


@dataclass
class QueryRow:
    setup: str
    queriers: int
    latencies_ms: list[float]
    errors: int
    wall: float
    frontend_cpu: float
    queriers_cpu: float
    ingesters_cpu: float
    clients_cpu: float


def _lookups(port: int, ids: list[str], clients: int) -> tuple[list[float], int]:
    """Look ``ids`` up with ``clients`` threads on keep-alive connections; latencies (ms), errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    todo = iter(ids)

    def client() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                trace_id = next(todo, None)
            if trace_id is None:
                return
            started = time.perf_counter()
            conn.request("GET", f"/api/traces/{trace_id}", headers={"Accept": "application/protobuf"})
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                errors += response.status != 200 or not body

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return latencies, errors


def run_queries(
    root: Path,
    launcher: Launcher,
    ingesters: list[Role],
    common: dict[str, Any],
    queriers: int,
    frontend: bool,
    ids: list[str],
    args: argparse.Namespace,
) -> QueryRow:
    tag = f"{'fe' if frontend else 'direct'}-{queriers}"
    started = [
        launcher.start(
            f"querier-{tag}-{i}", "querier", _with(common, server={"http_listen_port": free_port()})
        )
        for i in range(queriers)
    ]
    target = started[0]
    if frontend:
        addresses = [f"127.0.0.1:{q.http_port}" for q in started]
        target = launcher.start(
            f"frontend-{tag}",
            "query-frontend",
            _with(
                common,
                server={"http_listen_port": free_port()},
                query_frontend={"querier_addresses": addresses},
            ),
        )
    for role in [*started, target]:
        role.wait_ready()
    rng = random.Random(queriers * 2 + frontend)
    _lookups(target.http_port, rng.sample(ids, min(len(ids), args.warmup)), args.clients)
    timed = rng.sample(ids, min(len(ids), args.lookups))
    watched = {role.name: role for role in [*started, target, *ingesters]}
    before = {name: role.cpu() for name, role in watched.items()}
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    latencies, errors = _lookups(target.http_port, timed, args.clients)
    wall = time.perf_counter() - wall_started
    clients_cpu = time.process_time() - cpu_started
    used = {name: role.cpu() - before[name] for name, role in watched.items()}
    for role in [target, *started] if frontend else started:
        role.stop()
    return QueryRow(
        setup="query-frontend" if frontend else "querier directly",
        queriers=queriers,
        latencies_ms=latencies,
        errors=errors,
        wall=wall,
        frontend_cpu=used[target.name] if frontend else 0.0,
        queriers_cpu=sum(used[q.name] for q in started),
        ingesters_cpu=sum(used[i.name] for i in ingesters),
        clients_cpu=clients_cpu,
    )


def print_queries(
    rows: list[QueryRow], blocks: int, spans: int, traces: int, args: argparse.Namespace
) -> None:
    print(
        f"\nTrace by ID: {blocks} blocks, {traces:,} traces, {spans:,} spans; 2 idle ingesters in the ring; "
        f"{args.lookups} random present ids per row from {args.clients} client threads "
        f"(after {args.warmup} untimed); protobuf answers\n"
    )
    head = [
        "setup", "queriers", "p50 ms", "p99 ms", "lookups/s", "cores busy", "frontend CPU-ms/lookup",
        "queriers CPU-ms/lookup", "ingesters CPU-ms/lookup", "servers CPU-ms/lookup",
        "clients CPU-ms/lookup", "errors",
    ]  # fmt: skip
    cells = []
    for r in rows:
        n = max(len(r.latencies_ms), 1)
        servers = r.frontend_cpu + r.queriers_cpu + r.ingesters_cpu
        cells.append([
            r.setup, f"{r.queriers}", f"{statistics.median(r.latencies_ms):.1f}",
            f"{_pct(r.latencies_ms, 0.99):.1f}", f"{n / r.wall:,.0f}",
            f"{(servers + r.clients_cpu) / r.wall:.2f}",
            f"{r.frontend_cpu / n * 1000:.1f}" if r.setup != "querier directly" else "-",
            f"{r.queriers_cpu / n * 1000:.1f}", f"{r.ingesters_cpu / n * 1000:.1f}",
            f"{servers / n * 1000:.1f}", f"{r.clients_cpu / n * 1000:.1f}", f"{r.errors}",
        ])  # fmt: skip
    _table(head, cells)


def query_part(root: Path, args: argparse.Namespace) -> None:
    root.mkdir()
    started = time.perf_counter()
    ids, spans = write_query_blocks(root, args.query_blocks, args.query_traces)
    print(f"\n{args.query_blocks} query blocks written in {time.perf_counter() - started:.0f}s", flush=True)
    with Launcher(root) as launcher:
        ingesters, common = _start_ingesters(launcher, root, 2, 1, "never")
        for role in ingesters:
            role.wait_ready()
        rows = [run_queries(root, launcher, ingesters, common, 1, False, ids, args)]
        for count in args.queriers:
            rows.append(run_queries(root, launcher, ingesters, common, count, True, ids, args))
    print_queries(rows, args.query_blocks, spans, len(ids), args)


# ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans sent per ingest row")
    parser.add_argument("--traces-per-request", type=int, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--ingesters", type=_ints, default=[1, 2, 4])
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    parser.add_argument("--queriers", type=_ints, default=[1, 2, 4])
    parser.add_argument("--query-blocks", type=int, default=8)
    parser.add_argument("--query-traces", type=int, default=8000)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-query", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.spans, args.lookups, args.warmup, args.query_traces = 30_000, 60, 20, 800
    shapes = [(n, args.replication_factor) for n in args.ingesters]
    if (3, 3) not in shapes:
        shapes.append((3, 3))  # Tempo's production shape
    with tempfile.TemporaryDirectory(prefix="tracelake-scaling-") as tmp:
        if not args.skip_ingest:
            payloads = _payloads(args.spans, args.traces_per_request)
            rows = []
            for count, rf in shapes:
                print(f"ingest: {count} ingester(s), rf {rf} ...", flush=True)
                rows.append(
                    run_ingest(
                        Path(tmp, f"ingest-{count}-rf{rf}"), count, rf, payloads, args.senders, args.fsync
                    )
                )
            print_ingest(rows, args)
        if not args.skip_query:
            query_part(Path(tmp, "query"), args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every role was already stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
