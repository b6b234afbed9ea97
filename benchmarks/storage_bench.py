"""Storage engine figures for issue 2, printed as a table (no assertions: compare the columns).

    python benchmarks/storage_bench.py [--spans 1000000] [--lookups 200] [--row-group-spans 5000]

1. bytes per span on disk (every object of the block) beside the OTLP protobuf bytes of the same spans;
2. import throughput in spans per CPU-second (decode + block write) beside upb ``ParseFromString``
   alone on the same input, the floor for anything that reads OTLP in Python;
3. trace by id on the resulting block (local disk): p50/p99 over random present ids, and missing ids
   (answered by the bloom filter), warm (footer and bloom cached, as a querier holds them) and cold.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.backend import open_backend
from tracelake.block import keys
from tracelake.codec.decode import decode_otlp
from tracelake.codec.decoder import DECODER_NAME
from tracelake.codec.encode import spans_to_traces_data
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.encoding.v1.create import write_block
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.synth import SynthConfig, generate_request_bytes

TEMPO_BYTES_PER_SPAN = 125  # Tempo 2.7.2 on this machine, same kind of spans (design.md §7)


def _cpu() -> float:
    return time.process_time()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(name: str, value: str, note: str = "") -> None:
    print(f"| {name:<52} | {value:>16} | {note:<44} |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000, help="about this many spans")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--row-group-spans", type=int, default=BlockConfig().parquet_row_group_size_spans)
    args = parser.parse_args()

    traces = max(1, args.spans // 10)  # synth default: 5..15 spans per trace
    t0 = time.perf_counter()
    payloads = list(generate_request_bytes(SynthConfig(traces=traces, seed=42)))
    generate_s = time.perf_counter() - t0
    otlp_bytes = sum(len(p) for p in payloads)

    spans = sum(
        len(ss.spans)
        for p in payloads
        for rs in ExportTraceServiceRequest.FromString(p).resource_spans
        for ss in rs.scope_spans
    )
    start = _cpu()
    for p in payloads:
        ExportTraceServiceRequest.FromString(p)
    parse_only_cpu = _cpu() - start

    cfg = BlockConfig(parquet_row_group_size_spans=args.row_group_spans)
    with tempfile.TemporaryDirectory(prefix="tracelake-bench-") as tmp:
        backend = open_backend(TraceStorageConfig(local=LocalStorageConfig(path=tmp)))
        start = _cpu()
        tables = [decode_otlp(p).table for p in payloads]
        decode_cpu = _cpu() - start
        start = _cpu()
        meta = write_block(backend, "bench", pa.concat_tables(tables), cfg)
        write_cpu = _cpu() - start
        del tables
        block_bytes = sum(info.size for info in backend.list(keys.block_prefix("bench", meta.block_id)))

        trace_ids = [bytes.fromhex(h) for h in _sample_ids(backend, meta, args.lookups)]
        reader = BlockReader(backend, meta)
        cold_start = time.perf_counter()
        first = reader.find_trace(trace_ids[0])
        cold_ms = (time.perf_counter() - cold_start) * 1000
        assert first is not None
        present = []
        for tid in trace_ids:
            t = time.perf_counter()
            found = reader.find_trace(tid)
            present.append((time.perf_counter() - t) * 1000)
            assert found is not None
        rng = random.Random(1)
        missing = []
        for _ in range(args.lookups):
            tid = rng.randbytes(16)
            t = time.perf_counter()
            reader.find_trace(tid)
            missing.append((time.perf_counter() - t) * 1000)
        encode_ms = []
        for tid in trace_ids[:50]:
            found = reader.find_trace(tid)
            t = time.perf_counter()
            spans_to_traces_data(found).SerializeToString()
            encode_ms.append((time.perf_counter() - t) * 1000)

    import_cpu = decode_cpu + write_cpu
    print(
        f"\ntracelake storage benchmark: {spans:,} spans, {traces:,} traces, decoder={DECODER_NAME}, "
        f"row groups of ~{args.row_group_spans} spans ({len(meta.row_groups)} groups); "
        f"generated in {generate_s:.1f}s\n"
    )
    print(f"| {'figure':<52} | {'value':>16} | {'compare':<44} |")
    print(f"|{'-' * 54}|{'-' * 18}|{'-' * 46}|")
    _row("OTLP protobuf bytes per span", f"{otlp_bytes / spans:.1f} B", "input")
    _row(
        "block bytes per span (all objects)",
        f"{block_bytes / spans:.1f} B",
        f"goal <= 55 B; Tempo 2.7.2: {TEMPO_BYTES_PER_SPAN} B",
    )
    _row("  of which data.parquet", f"{meta.files[keys.DATA] / spans:.1f} B", "")
    _row("  of which summary.parquet", f"{meta.files[keys.SUMMARY] / spans:.1f} B", "")
    _row(
        "  of which bloom",
        f"{sum(v for k, v in meta.files.items() if k.startswith('bloom')) / spans:.2f} B",
        f"{meta.bloom_shards} shard(s)",
    )
    _row(
        "ParseFromString alone, spans per CPU-second", f"{spans / parse_only_cpu:,.0f}", "the floor in Python"
    )
    _row(
        "decode to Arrow, spans per CPU-second",
        f"{spans / decode_cpu:,.0f}",
        f"{decode_cpu / parse_only_cpu:.2f}x ParseFromString's CPU",
    )
    _row("block write (sort, encode, zstd), spans per CPU-s", f"{spans / write_cpu:,.0f}", "")
    _row(
        "import (decode + write), spans per CPU-second",
        f"{spans / import_cpu:,.0f}",
        f"{import_cpu / parse_only_cpu:.2f}x ParseFromString's CPU",
    )
    _row("trace by id, first lookup (opens file, footer)", f"{cold_ms:.2f} ms", "")
    _row("trace by id, present, p50", f"{statistics.median(present):.2f} ms", "goal < 5 ms; Tempo p50 61 ms")
    _row("trace by id, present, p99", f"{_percentile(present, 0.99):.2f} ms", "goal < 20 ms")
    _row("trace by id, missing (bloom), p50", f"{statistics.median(missing) * 1000:.1f} µs", "goal < 1 ms")
    _row("trace by id, missing (bloom), p99", f"{_percentile(missing, 0.99) * 1000:.1f} µs", "")
    _row("encode one trace to OTLP protobuf, p50", f"{statistics.median(encode_ms):.2f} ms", "")
    return 0


def _sample_ids(backend, meta, count: int) -> list[str]:
    import pyarrow.parquet as pq

    summary = pq.read_table(
        pa.BufferReader(backend.read(keys.block_key("bench", meta.block_id, keys.SUMMARY)))
    )
    ids = [t.hex() for t in summary["trace_id"].to_pylist()]
    return random.Random(0).sample(ids, min(count, len(ids)))


if __name__ == "__main__":
    sys.exit(main())
