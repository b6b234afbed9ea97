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
    counts = table.group_by("trace_id", use_threads=False).aggregate([("trace_id", "count")])
    return counts["trace_id"].to_pylist(), counts["trace_id_count"].to_numpy()


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
                self.live.append(Batch(table, segment))
        return table, refused_spans

    def cut_idle(self, now: float, idle_period: float, everything: bool = False) -> int:
        """Move traces idle for ``idle_period`` (all, with ``everything``) to the head block."""
        with self.lock:
            if not self.live:
                return 0
            if everything:
                idle = list(self.last_seen)
            else:
                cutoff = now - idle_period
                idle = [t for t, seen in self.last_seen.items() if seen <= cutoff]
            if not idle:
                return 0
            idle_set = pa.array(idle, pa.binary(16))
            still_live: list[Batch] = []
            for batch in self.live:
                mask = pc.is_in(batch.table["trace_id"], idle_set)
                moving = batch.table.filter(mask)
                if moving.num_rows:
                    self._add_to_head(Batch(moving, batch.segment), now)
                if moving.num_rows < batch.table.num_rows:
                    still_live.append(Batch(batch.table.filter(pc.invert(mask)), batch.segment))
            self.live = still_live
            for trace_id in idle:
                del self.last_seen[trace_id]
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
