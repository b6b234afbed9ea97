"""What one push costs an ingester, by request size: the fixed part and the part per span.

    python benchmarks/push_bench.py [--spans 200000] [--fsync always|never]

In process, on a real ``Ingester`` over a local directory (WAL with the chosen fsync policy): each
request is decoded, validated, appended to the WAL and added to the live traces (``store``, what the
``tracelake serve`` receiver and the ingester role's gRPC ``Push`` both run). Requests of 1, 5, 25 and
100 traces of ~10 spans; the same spans in every row. Baseline in the same run: protobuf's own parse
of the same payloads (upb ``ParseFromString``), the floor of any decoder. The fixed cost per request
is the intercept of CPU per request against spans per request (least squares over the rows): it is
what splitting a request over more ingesters multiplies (docs/microservices.md, "Scaling").
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.backend import open_backend
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.ingester.distributor import store
from tracelake.ingester.ingester import Ingester
from tracelake.ingester.limits import Overrides
from tracelake.synth import SynthConfig, generate_request_bytes

SIZES = (1, 5, 25, 100)


def _ingester(root: str, fsync: str) -> tuple[Ingester, TraceDB]:
    cfg = Config.model_validate(
        {
            "storage": {
                "trace": {"local": {"path": f"{root}/data"}, "wal": {"path": f"{root}/wal", "fsync": fsync}}
            },
            # Nothing is cut or flushed while measuring: only the receiving path is timed.
            "ingester": {"trace_idle_period": "1h", "max_block_duration": "1h", "max_block_bytes": 10**12},
        }
    )
    db = TraceDB(open_backend(cfg.storage.trace), cfg.storage.trace)
    ingester = Ingester(cfg, db, Overrides(cfg.overrides))
    ingester.replay()
    return ingester, db


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=200_000, help="spans per row (about)")
    parser.add_argument("--fsync", choices=("always", "never"), default="always")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tracelake-push-bench-") as root:
        ingester, db = _ingester(root, args.fsync)
        try:
            for size in SIZES:
                traces = max(size, args.spans // 10)
                synth = SynthConfig(traces=traces, seed=size, traces_per_request=size)
                payloads = list(generate_request_bytes(synth))
                for payload in payloads[: max(1, len(payloads) // 20)]:  # warm up
                    ExportTraceServiceRequest.FromString(payload)
                started = time.process_time()
                for payload in payloads:
                    ExportTraceServiceRequest.FromString(payload)
                parse = time.process_time() - started
                spans = 0
                started = time.process_time()
                for payload in payloads:
                    spans += store(ingester, "bench", payload, time.time_ns()).accepted_spans
                cpu = time.process_time() - started
                rows.append((size, len(payloads), spans, cpu, parse))
        finally:
            ingester.shutdown(120)  # writes what it holds as blocks (not timed)
            db.close()
    per_request = np.array([spans / n for _, n, spans, _, _ in rows])
    cost = np.array([cpu / n for _, n, _, cpu, _ in rows])
    slope, intercept = np.polyfit(per_request, cost, 1)
    print(f"\ningester push cost by request size (in process, WAL fsync={args.fsync})\n")
    print("| traces/request | requests |   spans | µs CPU/request | µs CPU/span | upb parse µs/span |")
    print("|----------------|----------|---------|----------------|-------------|-------------------|")
    for size, n, spans, cpu, parse in rows:
        print(
            f"| {size:>14} | {n:>8,} | {spans:>7,} | {cpu / n * 1e6:>14,.0f} | {cpu / spans * 1e6:>11.2f} "
            f"| {parse / spans * 1e6:>17.2f} |"
        )
    print(f"\nfixed cost per request ≈ {intercept * 1e6:,.0f} µs, then {slope * 1e6:.2f} µs per span")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
