"""Trace by ID across many blocks (issue 4's figure), as the querier does it: block list, id-range
and bloom pruning, one row group read, spans encoded as the API answers (protobuf TracesData).

    python benchmarks/query_bench.py [--spans 2000000] [--lookups 200] [--searches 30]

Builds 100 blocks of ~spans/100 spans in a local backend, then measures p50/p99 over random present
and missing ids with 1, 10 and 100 of those blocks visible, warm (blooms and footers cached, as a
running querier holds them). Then search p50/p99 (tags, TraceQL) over the 100 blocks and over one
block of 20,000 traces, the data Tempo's search figures were measured on.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import yaml

from tracelake.backend import open_backend
from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.config import LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.search.engine import search
from tracelake.search.request import parse_search
from tracelake.search.results import search_json
from tracelake.synth import SynthConfig, generate_request_bytes

GOALS = "goal (~2M spans, 100 blocks): p50 < 8 ms, p99 < 30 ms; missing < 3 ms"
TEMPO = {1: 10.8, 10: 13.1, 100: 23.2}  # Tempo 2.7.2 p50 ms, design.md §7
TEMPO_COMPACTED = 67.0  # Tempo 2.7.2 after its compactor merged the 100 blocks into 2 (issue 4)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=2_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--searches", type=int, default=30, help="runs per search query")
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
        for visible in (1, 10, 100, "100 compacted"):
            if visible == "100 compacted":
                _compact(cfg, tmp)
            db = TraceDB(open_backend(cfg), cfg)
            tenant = f"t{visible}" if visible != "100 compacted" else "t100"
            rng = random.Random(visible)
            count = 100 if visible == "100 compacted" else visible
            visible_ids = [i for ids in ids_by_block[:count] for i in ids]
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
            blocks = len(db.block_list(tenant).metas)
            tempo = TEMPO.get(visible, TEMPO_COMPACTED)
            print(f"| {blocks:>6} | " + " | ".join(cells) + f" | {tempo:>6.1f} ms |")
            db.close()
        print()
        _search_table(cfg, "t100", "the 100 blocks, compacted", args.searches)
        single = TraceStorageConfig(local=LocalStorageConfig(path=f"{tmp}/one"), blocklist_poll=3600)
        writer = TraceDB(open_backend(single), single)
        payloads = generate_request_bytes(SynthConfig(traces=20_000, seed=42, error_rate=0.02))
        writer.write_block("one", pa.concat_tables([decode_otlp(p).table for p in payloads]))
        writer.close()
        print()
        _search_table(single, "one", "one block of 20,000 traces (as Tempo's figures)", args.searches)
    return 0


SEARCHES = [  # (what, parameters, Tempo 2.7.2 p50 ms on one block of 20k traces, design.md §7)
    ("tags service.name=cart, limit 20", {"tags": "service.name=cart", "limit": "20"}, "5"),
    (
        "TraceQL { .http.status_code = 500 }, limit 20",
        {"q": "{ .http.status_code = 500 }", "limit": "20"},
        "14",
    ),
    (
        "TraceQL payment && status = error, spss 3",
        {"q": '{ resource.service.name = "payment" && status = error }', "limit": "5", "spss": "3"},
        "-",
    ),
    (
        "minDuration=150ms maxDuration=1s, limit 10",
        {"minDuration": "150ms", "maxDuration": "1s", "limit": "10"},
        "-",
    ),
    (
        "TraceQL structural >> | select()",
        {
            "q": '{ resource.service.name = "frontend" } >> { span.db.system = "postgresql" }'
            " | select(span.db.statement)",
            "limit": "3",
        },
        "-",
    ),
    (
        'TraceQL span attribute { span.http.route =~ "/api/.*" }',
        {"q": '{ span.http.route =~ "/api/.*" }', "limit": "20"},
        "-",
    ),
    (
        "TraceQL generic attribute { span.net.peer.port > 5000 }",
        {"q": "{ span.net.peer.port > 5000 }", "limit": "20"},
        "-",
    ),
]


def _compact(cfg: TraceStorageConfig, tmp: str) -> None:
    """Compact every tenant with ``tracelake compact`` (the 100 blocks of t100 become a few)."""
    config = Path(tmp) / "compact.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"trace": {"local": {"path": cfg.local.path}}},
                "compactor": {"compaction": {"block_retention": 0, "compaction_window": "1000h"}},
            }
        )
    )
    subprocess.run(
        [sys.executable, "-m", "tracelake.cli.main", "--config", str(config), "compact"], check=True
    )


def _search_table(cfg: TraceStorageConfig, tenant: str, what: str, repeats: int) -> None:
    """Search as the API runs it (block list, summaries, columns, JSON): the first run (columns
    read from Parquet, unless an earlier query kept them) and p50/p99 warm."""
    db = TraceDB(open_backend(cfg), cfg)
    metas = db.block_list(tenant).metas
    window = {
        "start": str(min(m.start_unix_nano for m in metas) // 10**9),
        "end": str(max(m.end_unix_nano for m in metas) // 10**9 + 1),
    }
    spans = sum(m.total_spans for m in metas)
    print(f"Search over {what} ({spans:,} spans), the first run then {repeats} warm runs:\n")
    print(
        f"| {'search':<58} | {'first run':>9} | {'p50':>9} | {'p99':>9} | {'traces':>6} | {'Tempo p50':>9} |"
    )
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 8}|{'-' * 11}|")
    for label, params, tempo in SEARCHES:
        request = parse_search({**params, **window})
        timings = []
        found = 0
        for _ in range(repeats + 2):
            t = time.perf_counter()
            hits, metrics = search(db, None, [tenant], request)
            json.dumps(search_json(hits, metrics, request.traceql))
            timings.append((time.perf_counter() - t) * 1000)
            found = len(hits)
        first, timings = timings[0], timings[2:]
        tempo_cell = f"{tempo} ms" if tempo != "-" else "-"
        print(
            f"| {label:<58} | {first:>6.1f} ms | {statistics.median(timings):>6.1f} ms | "
            f"{_pct(timings, 0.99):>6.1f} ms | {found:>6} | {tempo_cell:>9} |"
        )
    db.close()


if __name__ == "__main__":
    sys.exit(main())
