"""Which blocks to merge: a pure function of the block list (and the clock), so it is tested alone.

Blocks are grouped by tenant, format version and time window (of their newest span, as Tempo does).
Within a group, inputs are taken smallest first, 2 to ``max_input_blocks`` per job, while their summed
size and trace count stay within ``max_block_bytes`` and ``max_compaction_objects``, and their row
groups within ``max_input_row_groups`` (the Parquet metadata a job holds grows with them): one job
writes one output block, so outputs are bounded by construction.

The window that may still receive blocks (the current one) is also grouped by compaction level, and a
job there waits until it has ``max_input_blocks`` inputs: a span is rewritten about
log_{max_input_blocks}(blocks per window) times, not once per arriving block. Older windows merge
across levels, as Tempo does, so each converges to as few blocks as the size limits allow (a crash
that leaves blocks of several levels in a window does not leave them apart for good).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tracelake.block.meta import BlockMeta
from tracelake.config import CompactionConfig
from tracelake.encoding.v1.find_trace import (
    PARSED_FOOTER_BYTES_PER_ROW_GROUP,
    WRITER_METADATA_BYTES_PER_ROW_GROUP,
)

_NS = 1_000_000_000
# Parquet metadata a job holds per row group of its inputs, outside the rows ``memory_budget_bytes``
# sizes: each open input's parsed footer and the output writer's (the output has no more row groups
# than its inputs).
ROW_GROUP_METADATA_BYTES = PARSED_FOOTER_BYTES_PER_ROW_GROUP + WRITER_METADATA_BYTES_PER_ROW_GROUP
# Output block ids are derived from the inputs: a retried or doubly-run job writes the same block.
_OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c1c1e-6a55-4c1b-9d4e-74726163656c")


@dataclass(frozen=True)
class Job:
    tenant: str
    window: int  # window number: newest span // compaction_window
    level: int  # highest compaction level of the inputs; the output gets level + 1
    inputs: tuple[BlockMeta, ...]

    @property
    def input_ids(self) -> list[str]:
        return sorted(m.block_id for m in self.inputs)

    @property
    def job_id(self) -> str:
        return hashlib.sha256(",".join(self.input_ids).encode()).hexdigest()[:16]

    @property
    def output_block_id(self) -> str:
        return str(uuid.uuid5(_OUTPUT_ID_NAMESPACE, f"{self.tenant}/{','.join(self.input_ids)}"))

    @property
    def spans(self) -> int:
        return sum(m.total_spans for m in self.inputs)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.inputs)


def window_of(meta: BlockMeta, window_seconds: float) -> int:
    return meta.end_unix_nano // max(1, int(window_seconds * _NS))


def plan(metas: Iterable[BlockMeta], cfg: CompactionConfig, now_unix: float) -> list[Job]:
    """Jobs for the live blocks ``metas`` (one tenant or several), oldest window first; no block is in
    two jobs."""
    current_window = int(now_unix * _NS) // max(1, int(cfg.compaction_window * _NS))
    groups: dict[tuple[str, str, int, int], list[BlockMeta]] = defaultdict(list)
    for meta in metas:
        window = window_of(meta, cfg.compaction_window)
        level = meta.compaction_level if window >= current_window else -1  # -1: any level
        groups[(meta.tenant_id, meta.format, window, level)].append(meta)
    jobs: list[Job] = []
    for (tenant, _, window, _), members in sorted(
        groups.items(), key=lambda kv: (kv[0][2], kv[0][3], kv[0][0])
    ):
        closed = window < current_window
        for inputs, full in _fill(sorted(members, key=lambda m: (m.size, m.block_id)), cfg):
            if closed or full:
                level = max(m.compaction_level for m in inputs)
                jobs.append(Job(tenant, window, level, tuple(inputs)))
    return jobs


def max_input_row_groups(cfg: CompactionConfig) -> int:
    """Row groups a job may read: their metadata (``ROW_GROUP_METADATA_BYTES`` each) stays within half
    of ``memory_budget_bytes``, so a job's memory does not grow with the size of its blocks (64 MiB:
    420 row groups, about 1.7M spans in row groups of 4000)."""
    return max(1, (cfg.memory_budget_bytes // 2) // ROW_GROUP_METADATA_BYTES)


def _fill(candidates: list[BlockMeta], cfg: CompactionConfig) -> list[tuple[list[BlockMeta], bool]]:
    """Consecutive runs of ``candidates`` (smallest first) within the per-job limits, each with
    whether it is full: ``max_input_blocks`` inputs, or the next candidate did not fit and the run
    already uses half of a limit (waiting for more blocks would not make the job much larger; a run
    of small blocks cut by one large block is not full)."""
    max_groups = max_input_row_groups(cfg)
    runs: list[tuple[list[BlockMeta], bool]] = []
    run: list[BlockMeta] = []
    size = traces = groups = 0
    for meta in candidates:
        fits = (
            size + meta.size <= cfg.max_block_bytes
            and traces + meta.total_traces <= cfg.max_compaction_objects
            and groups + len(meta.row_groups) <= max_groups
        )
        if len(run) == cfg.max_input_blocks or not fits:
            half_used = (
                2 * size >= cfg.max_block_bytes
                or 2 * traces >= cfg.max_compaction_objects
                or 2 * groups >= max_groups
            )
            runs.append((run, len(run) == cfg.max_input_blocks or half_used))
            run, size, traces, groups = [], 0, 0, 0
            if (
                meta.size > cfg.max_block_bytes
                or meta.total_traces > cfg.max_compaction_objects
                or len(meta.row_groups) > max_groups
            ):
                continue  # already as large as an output may be: left alone
        run.append(meta)
        size += meta.size
        traces += meta.total_traces
        groups += len(meta.row_groups)
    runs.append((run, len(run) == cfg.max_input_blocks))
    return [(r, full) for r, full in runs if len(r) >= 2]
