"""Compaction figures for issue 5, printed as a table (no assertions: compare the columns).

    python benchmarks/compaction_bench.py [--spans 1000000] [--blocks 100] [--replicas 10]

100 small blocks (1M spans in all: 10 of the blocks are replicas of others, as replicated writes leave
them, and 20% of each trace's spans land in the next block, as traces cut at different times do) in
one closed hour are compacted by ``tracelake compact`` in a child process, whose CPU time and peak RSS
come from ``getrusage``. Baselines from the same run: ``write_block`` of the same spans when the blocks
are made (sort, encode, zstd: the floor for anything that rewrites spans), and the RSS of a child that
only imports tracelake.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tracelake.backend import open_backend
from tracelake.block import keys
from tracelake.blocklist.tenant_index import list_blocks, load_block_list
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig, CompactionConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.db import TraceDB
from tracelake.encoding.v1.create import write_block
from tracelake.synth import SynthConfig, generate_request_bytes

TENANT = "single-tenant"
HOUR = 3600
# Grafana Tempo 2.7.2 on this machine (issue 5): 100 blocks of 1.94M spans into 2.
TEMPO = {"spans_per_cpu_s": 32_000, "rss": "1.86 GiB for 253 MB of blocks", "rewrites": 3.9}


def _row(name: str, value: str, note: str = "") -> None:
    print(f"| {name:<48} | {value:>18} | {note:<52} |")


# Run in a child: the command, then its own CPU time and VmHWM (the peak RSS of this process image;
# getrusage's ru_maxrss would include the parent's pages from before exec).
_MEASURE = """
import json, resource, sys, threading, time

def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) * 1024

peak_anon = [0]
def sample():  # RssAnon excludes file pages, e.g. the memory-mapped input blocks
    while True:
        peak_anon[0] = max(peak_anon[0], status("RssAnon:"))
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
code = 0
if sys.argv[1:]:
    from tracelake.cli.launch import main  # the console script: picks the compactor's Arrow pool
    code = main()
else:
    import tracelake.compactor.service  # noqa: F401
usage = resource.getrusage(resource.RUSAGE_SELF)
peak_anon[0] = max(peak_anon[0], status("RssAnon:"))
print(json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "rss": status("VmHWM:"), "anon": peak_anon[0]}))
sys.exit(code)
"""


def _child_usage(args: list[str]) -> tuple[float, int, int, float]:
    """Run ``tracelake args`` (or only the imports) in a child: (CPU s, peak RSS, peak anonymous RSS
    sampled every 20 ms, wall s)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *args], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures["cpu"], figures["rss"], figures["anon"], wall


def _make_blocks(backend, args) -> tuple[int, int, float, int]:
    """Write the input blocks; returns (spans, uncompressed Arrow bytes, write_block CPU s, uniques)."""
    window_start = (int(time.time()) // HOUR - 3) * HOUR + 60
    synth = SynthConfig(
        traces=max(1, args.spans // 10),
        seed=42,
        start_unix_nano=window_start * 1_000_000_000,
        window_seconds=HOUR - 600,
    )
    payloads = list(generate_request_bytes(synth))
    distinct = args.blocks - args.replicas
    per_block = max(1, len(payloads) // distinct)
    rng = np.random.default_rng(7)
    cfg = BlockConfig()
    carry: pa.Table | None = None
    written: list[pa.Table] = []
    spans = arrow_bytes = uniques = 0
    write_cpu = 0.0
    for i in range(distinct):
        chunk = payloads[i * per_block : (i + 1) * per_block if i < distinct - 1 else None]
        table = pa.concat_tables([decode_otlp(p).table for p in chunk])
        uniques += table.num_rows
        moves = rng.random(table.num_rows) < 0.2 if i < distinct - 1 else np.zeros(table.num_rows, bool)
        here = table.filter(pa.array(~moves))
        if carry is not None:
            here = pa.concat_tables([here, carry])
        carry = table.filter(pa.array(moves))
        start = time.process_time()
        write_block(backend, TENANT, here, cfg)
        write_cpu += time.process_time() - start
        spans += here.num_rows
        arrow_bytes += here.nbytes
        if len(written) < args.replicas:
            written.append(here)
    for table in written:  # replicas: the same spans written again by another ingester
        write_block(backend, TENANT, table, cfg)
        spans += table.num_rows
        arrow_bytes += table.nbytes
    return spans, arrow_bytes, write_cpu, uniques


def _trace_ids(backend, meta) -> list[bytes]:
    summary = pq.read_table(
        pa.BufferReader(backend.read(keys.block_key(TENANT, meta.block_id, keys.SUMMARY)))
    )
    return summary["trace_id"].to_pylist()


def _lookup_p50(storage: TraceStorageConfig, trace_ids: list[bytes]) -> float:
    db = TraceDB(open_backend(storage), storage)
    try:
        for tid in trace_ids[:20]:  # warm: footers and bloom shards cached, as a querier holds them
            db.find_trace(TENANT, tid)
        times = []
        for tid in trace_ids:
            t = time.perf_counter()
            found = db.find_trace(TENANT, tid)
            times.append((time.perf_counter() - t) * 1000)
            assert found is not None
        return statistics.median(times)
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=10, help="blocks that repeat another block's spans")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--memory-budget", type=int, help="compactor.compaction.memory_budget_bytes")
    args = parser.parse_args()
    budget = {"memory_budget_bytes": args.memory_budget} if args.memory_budget else {}
    budget_bytes = args.memory_budget or CompactionConfig().memory_budget_bytes
    # Other work on the machine's shared cores makes every CPU-second slower, and so does the host's
    # other guests, which the load average does not show: the same code measured 277-356k merged
    # spans per CPU-s in different hours (docs/compaction.md, "Measured").
    load_at_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="tracelake-compaction-bench-") as tmp:
        storage = TraceStorageConfig(local=LocalStorageConfig(path=str(Path(tmp) / "data")))
        backend = open_backend(storage)
        t0 = time.perf_counter()
        spans, arrow_bytes, write_cpu, uniques = _make_blocks(backend, args)
        made_s = time.perf_counter() - t0
        before = list_blocks(backend, TENANT).metas
        rng = random.Random(1)
        present = sorted({tid for m in before[:10] for tid in _trace_ids(backend, m)})
        ids = rng.sample(present, min(args.lookups, len(present)))
        p50_before = _lookup_p50(storage, ids)

        config = Path(tmp) / "tracelake.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "storage": {"trace": {"local": {"path": storage.local.path}}},
                    "compactor": {"compaction": {"block_retention": 0, **budget}},
                }
            )
        )
        idle_cpu, idle_rss, idle_anon, _ = _child_usage([])
        cpu, rss, anon, wall = _child_usage(["--config", str(config), "compact"])
        cpu -= idle_cpu  # interpreter start and imports, measured alone

        blocks = list_blocks(backend, TENANT)
        after = load_block_list(backend, TENANT).metas
        outputs = [m for m in blocks.metas + [c.meta for c in blocks.compacted] if m.replaces]
        rewritten = sum(m.total_spans for m in outputs)
        final_spans = sum(m.total_spans for m in after)
        processed = sum(
            m.total_spans
            for m in blocks.metas + [c.meta for c in blocks.compacted]
            if m.block_id in {r for o in outputs for r in o.replaces}
        )
        p50_after = _lookup_p50(storage, ids)
        bytes_before = sum(m.size for m in before)
        bytes_after = sum(m.size for m in after)

    print(
        f"\ntracelake compaction benchmark: {spans:,} spans in {len(before)} blocks "
        f"({args.replicas} replicas, {spans - uniques:,} duplicate spans), made in {made_s:.0f}s; "
        f"compacted in {wall:.1f}s wall. Load average at start {load_at_start:.1f} on {os.cpu_count()} "
        "CPUs: CPU-second figures drop under load.\n"
    )
    print(f"| {'figure':<48} | {'value':>18} | {'compare':<52} |")
    print(f"|{'-' * 50}|{'-' * 20}|{'-' * 54}|")
    _row(
        "spans merged per CPU-second (all jobs)",
        f"{processed / cpu:,.0f}",
        f"goal >= 300k; Tempo 2.7.2: {TEMPO['spans_per_cpu_s']:,}",
    )
    _row(
        "input spans per CPU-second (end to end)",
        f"{spans / cpu:,.0f}",
        f"{len(outputs)} jobs, {cpu:.1f} CPU-s",
    )
    _row(
        "baseline: write_block alone, spans per CPU-s",
        f"{uniques / write_cpu:,.0f}",
        "sort + encode + zstd of the same spans",
    )
    _row(
        "peak RSS of tracelake compact",
        f"{rss / 2**20:,.0f} MiB",
        f"{rss / arrow_bytes:.1%} of the input's Arrow size",
    )
    _row("  of which interpreter + imports", f"{idle_rss / 2**20:,.0f} MiB", "a child that only imports")
    _row(
        "peak anonymous RSS (no file pages)",
        f"{anon / 2**20:,.0f} MiB",
        f"{anon / arrow_bytes:.1%}; imports alone {idle_anon / 2**20:,.0f} MiB; "
        f"budget {budget_bytes / 2**20:.0f} MiB",
    )
    _row(
        "input uncompressed Arrow size",
        f"{arrow_bytes / 2**20:,.0f} MiB",
        f"goal: peak RSS < 25% (< {arrow_bytes / 4 / 2**20:,.0f} MiB)",
    )
    _row("blocks before -> after", f"{len(before)} -> {len(after)}", "")
    _row(
        "bytes before -> after",
        f"{bytes_before / 1e6:.1f} -> {bytes_after / 1e6:.1f} MB",
        f"inputs minus duplicates: {bytes_before * uniques / spans / 1e6:.1f} MB",
    )
    _row("spans before -> after", f"{spans:,} -> {final_spans:,}", f"{uniques:,} distinct")
    # A block's compaction level is how many merges wrote it (inputs are level 0; an output is one
    # above its highest input): no span in the final blocks was rewritten more often than that.
    _row(
        "rewrites of any span (final blocks' level)",
        f"{max(m.compaction_level for m in after)}",
        f"goal <= 2; Tempo 2.7.2: {TEMPO['rewrites']} on average",
    )
    _row("spans written / final spans", f"{rewritten / final_spans:.2f}", "duplicates written before dropped")
    _row(
        "trace by id p50, before -> after",
        f"{p50_before:.2f} -> {p50_after:.2f} ms",
        "warm; must not get slower (Tempo: 3x slower)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
