"""Blocks for compaction tests: synthetic traces cut into blocks so that traces are split between
blocks, plus replicated blocks (exact duplicates), all in one closed compaction window."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pyarrow as pa

from tracelake.backend import Backend
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import hide_replaced, list_blocks
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig
from tracelake.encoding.v1.create import write_block
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.synth import SynthConfig, generate_request_bytes

TENANT = "single-tenant"
HOUR = 3600


def closed_window_start() -> int:
    """Unix nanoseconds one minute into the hour before the previous one: a window nobody writes to."""
    return ((int(time.time()) // HOUR - 2) * HOUR + 60) * 1_000_000_000


def synth_spans(traces: int, seed: int) -> pa.Table:
    cfg = SynthConfig(traces=traces, seed=seed, start_unix_nano=closed_window_start(), window_seconds=600)
    return pa.concat_tables([decode_otlp(p).table for p in generate_request_bytes(cfg)])


def write_split_blocks(
    backend: Backend,
    spans: pa.Table,
    blocks: int,
    *,
    replicated: int = 0,
    seed: int = 0,
    cfg: BlockConfig | None = None,
    tenant: str = TENANT,
) -> list[BlockMeta]:
    """``blocks`` blocks holding each span once (a trace's spans spread over several blocks), then
    ``replicated`` more blocks that repeat the first blocks' spans exactly."""
    cfg = cfg or BlockConfig(parquet_row_group_size_spans=300)
    part = np.random.default_rng(seed).integers(0, blocks, spans.num_rows)
    metas = [write_block(backend, tenant, spans.filter(pa.array(part == i)), cfg) for i in range(blocks)]
    metas += [write_block(backend, tenant, spans.filter(pa.array(part == i)), cfg) for i in range(replicated)]
    return metas


def span_keys(spans: pa.Table) -> Counter:
    return Counter(zip(spans["trace_id"].to_pylist(), spans["span_id"].to_pylist(), strict=True))


def visible_spans(backend: Backend, tenant: str = TENANT) -> tuple[Counter, dict[bytes, set[str]]]:
    """What a reader sees: each (trace id, span id) with its count, and the blocks holding each trace."""
    counts: Counter = Counter()
    holders: dict[bytes, set[str]] = {}
    for meta in hide_replaced(list_blocks(backend, tenant)).metas:
        for table in BlockReader(backend, meta).iter_spans():
            counts.update(span_keys(table))
            for trace_id in set(table["trace_id"].to_pylist()):
                holders.setdefault(trace_id, set()).add(meta.block_id)
    return counts, holders
