"""One tenant's spans in the ingester: live traces, the head block, and blocks being flushed.

Spans stay in the Arrow batches they were decoded into; a batch carries the WAL segment that holds it,
so the ingester knows which segments are still needed. Per trace the instance keeps only its last
receive time and approximate size (a dict entry per trace, never an object per span).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

REASON_TRACE_TOO_LARGE = "trace_too_large"


@dataclass
class Batch:
    table: pa.Table
    segment: int
    trace_ids: list[bytes] = field(default_factory=list)  # distinct ids in ``table`` (empty: unknown)


@dataclass
class HeadBlock:
    tenant: str
    batches: list[Batch] = field(default_factory=list)
    bytes: int = 0
    started: float = 0.0  # monotonic time of its first batch

    def segments(self) -> list[int]:
        return [b.segment for b in self.batches]

    def spans(self) -> pa.Table:
        return pa.concat_tables([b.table for b in self.batches])


def _trace_counts(table: pa.Table) -> tuple[list[bytes], np.ndarray]:
    """Distinct trace ids of a batch and their span counts (value_counts: no query-engine set-up)."""
    counts = pc.value_counts(table["trace_id"])
    return counts.field("values").to_pylist(), counts.field("counts").to_numpy()


class TenantInstance:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.lock = threading.Lock()
        self.live: list[Batch] = []
        self.last_seen: dict[bytes, float] = {}  # trace id -> monotonic time of its last span
        self.trace_bytes: dict[bytes, int] = {}
        self.head = HeadBlock(tenant)
        self.flushing: list[HeadBlock] = []

    def append(
        self, table: pa.Table, segment: int, payload_bytes: int, now: float, max_bytes_per_trace: int
    ) -> tuple[pa.Table, int]:
        """Hold ``table``'s spans as live; returns (spans kept, spans refused as trace_too_large)."""
        ids, counts = _trace_counts(table)
        per_span = payload_bytes / max(table.num_rows, 1)
        refused: list[bytes] = []
        with self.lock:
            for trace_id, count in zip(ids, counts, strict=True):
                size = self.trace_bytes.get(trace_id, 0) + int(count * per_span)
                if max_bytes_per_trace and size > max_bytes_per_trace:
                    refused.append(trace_id)
                    continue
                self.trace_bytes[trace_id] = size
                self.last_seen[trace_id] = now
            if refused:
                keep = pc.invert(pc.is_in(table["trace_id"], pa.array(refused, pa.binary(16))))
                before = table.num_rows
                table = table.filter(keep)
                refused_spans = before - table.num_rows
            else:
                refused_spans = 0
            if table.num_rows:
                self.live.append(
                    Batch(table, segment, [t for t in ids if t not in refused] if refused else ids)
                )
        return table, refused_spans

    def cut_idle(self, now: float, idle_period: float, everything: bool = False) -> int:
        """Move traces idle for ``idle_period`` (all, with ``everything``) to the head block.

        A batch whose traces are all idle moves as it is (no copy); in real traffic that is nearly
        every batch, since a request carries whole traces. Only batches mixing idle and live traces
        are split, with one filter over all of them.
        """
        with self.lock:
            if not self.live:
                return 0
            cutoff = float("inf") if everything else now - idle_period
            last_seen = self.last_seen
            idle = {t for t, seen in last_seen.items() if seen <= cutoff}
            if not idle:
                return 0
            keep: list[Batch] = []
            mixed: list[Batch] = []
            for batch in self.live:
                idle_here = sum(1 for t in batch.trace_ids if t in idle)
                if idle_here == len(batch.trace_ids):
                    self._add_to_head(batch, now)
                elif idle_here == 0:
                    keep.append(batch)
                else:
                    mixed.append(batch)
            if mixed:
                table = pa.concat_tables([b.table for b in mixed])
                segment = min(b.segment for b in mixed)  # the merged batch needs its oldest segment
                mask = pc.is_in(table["trace_id"], pa.array(list(idle), pa.binary(16)))
                self._add_to_head(Batch(table.filter(mask), segment), now)
                remaining = [t for b in mixed for t in b.trace_ids if t not in idle]
                keep.append(Batch(table.filter(pc.invert(mask)), segment, list(dict.fromkeys(remaining))))
            self.live = keep
            for trace_id in idle:
                del last_seen[trace_id]
                self.trace_bytes.pop(trace_id, None)
            return len(idle)

    def _add_to_head(self, batch: Batch, now: float) -> None:
        if not self.head.batches:
            self.head.started = now
        self.head.batches.append(batch)
        self.head.bytes += batch.table.nbytes

    def take_head(
        self, now: float, max_duration: float, max_bytes: int, force: bool = False
    ) -> HeadBlock | None:
        """The head block, replaced by an empty one, once it is old or big enough (or ``force``)."""
        with self.lock:
            head = self.head
            if not head.batches:
                return None
            if not (force or head.bytes >= max_bytes or now - head.started >= max_duration):
                return None
            self.head = HeadBlock(self.tenant)
            self.flushing.append(head)
            return head

    def flushed(self, head: HeadBlock) -> None:
        with self.lock:
            self.flushing.remove(head)

    def min_segment(self) -> int | None:
        with self.lock:
            segments = [b.segment for b in self.live] + self.head.segments()
            segments += [s for h in self.flushing for s in h.segments()]
        return min(segments) if segments else None

    def live_trace_count(self) -> int:
        return len(self.last_seen)

    def head_bytes(self) -> int:
        return self.head.bytes

    def tables(self) -> list[pa.Table]:
        """Every span in memory (live, head, being flushed), in arrival order."""
        with self.lock:
            batches = list(self.live) + list(self.head.batches)
            batches += [b for h in self.flushing for b in h.batches]
        return [b.table for b in batches]

    def find_trace(self, trace_id: bytes) -> list[pa.Table]:
        """Spans of ``trace_id`` still in memory (live, head, being flushed)."""
        with self.lock:
            batches = list(self.live) + list(self.head.batches)
            batches += [b for h in self.flushing for b in h.batches]
        needle = pa.scalar(trace_id, pa.binary(16))
        found = []
        for batch in batches:
            hit = batch.table.filter(pc.equal(batch.table["trace_id"], needle))
            if hit.num_rows:
                found.append(hit)
        return found
