"""Trace by ID across many blocks (issue 4's figure), as the querier does it: block list, id-range
and bloom pruning, one row group read, spans encoded as the API answers (protobuf TracesData).

    python benchmarks/query_bench.py [--spans 2000000] [--lookups 200]

Builds 100 blocks of ~spans/100 spans in a local backend, then measures p50/p99 over random present
and missing ids with 1, 10 and 100 of those blocks visible, warm (blooms and footers cached, as a
running querier holds them).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time

import pyarrow as pa

from tracelake.backend import open_backend
from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.config import LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.synth import SynthConfig, generate_request_bytes

GOALS = "goal (~2M spans, 100 blocks): p50 < 8 ms, p99 < 30 ms; missing < 3 ms"
TEMPO = {1: 10.8, 10: 13.1, 100: 23.2}  # Tempo 2.7.2 p50 ms, design.md §7


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=2_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    args = parser.parse_args()
    traces_per_block = max(1, args.spans // 100 // 10)
    with tempfile.TemporaryDirectory(prefix="tracelake-query-") as tmp:
        cfg = TraceStorageConfig(local=LocalStorageConfig(path=tmp), blocklist_poll=3600)
        writer = TraceDB(open_backend(cfg), cfg)
        ids_by_block: list[list[bytes]] = []
        started = time.perf_counter()
        for block in range(100):  # tenant tN sees the first N blocks
            payloads = generate_request_bytes(SynthConfig(traces=traces_per_block, seed=block))
            spans = pa.concat_tables([decode_otlp(p).table for p in payloads])
            for count in (1, 10, 100):
                if block < count:
                    writer.write_block(f"t{count}", spans)
            ids_by_block.append(list(set(spans["trace_id"].to_pylist())))
        writer.close()
        build_s = time.perf_counter() - started
        print(
            f"\n100 blocks of {traces_per_block:,} traces (~{traces_per_block * 10:,} spans each) built in "
            f"{build_s:.0f}s; {args.lookups} lookups per row; {GOALS}\n"
        )
        print(
            f"| {'blocks':>6} | {'present p50':>12} | {'present p99':>12} | {'missing p50':>12} | "
            f"{'missing p99':>12} | {'Tempo p50':>9} |"
        )
        print(f"|{'-' * 8}|{'-' * 14}|{'-' * 14}|{'-' * 14}|{'-' * 14}|{'-' * 11}|")
        for visible in (1, 10, 100):
            db = TraceDB(open_backend(cfg), cfg)
            tenant = f"t{visible}"
            rng = random.Random(visible)
            visible_ids = [i for ids in ids_by_block[:visible] for i in ids]
            present = rng.sample(visible_ids, min(args.lookups, len(visible_ids)))
            for trace_id in present[:20]:  # warm: blooms, footers
                db.find_trace(tenant, trace_id)
            found_ms, missing_ms = [], []
            for trace_id in present:
                t = time.perf_counter()
                spans_to_traces_data(db.find_trace(tenant, trace_id)).SerializeToString()
                found_ms.append((time.perf_counter() - t) * 1000)
            for _ in range(args.lookups):
                t = time.perf_counter()
                assert db.find_trace(tenant, rng.randbytes(16)) is None
                missing_ms.append((time.perf_counter() - t) * 1000)
            cells = [
                f"{statistics.median(found_ms):>9.2f} ms",
                f"{_pct(found_ms, 0.99):>9.2f} ms",
                f"{statistics.median(missing_ms):>9.2f} ms",
                f"{_pct(missing_ms, 0.99):>9.2f} ms",
            ]
            print(f"| {visible:>6} | " + " | ".join(cells) + f" | {TEMPO[visible]:>6.1f} ms |")
            db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
