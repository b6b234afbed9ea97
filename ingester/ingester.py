"""The ingester: WAL first, then live traces in memory, then blocks in the backend.

A request is durable once ``push`` returns (its WAL record is written per the fsync policy). A flush
check cuts idle traces into the tenant's head block and queues head blocks that are old or big enough;
one flusher thread writes them as blocks. WAL segments are deleted once no span held in memory (or being
pushed) comes from them; the flush journal makes replay skip what a block already holds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracelake import failpoints
from tracelake.block import keys
from tracelake.block.meta import BlockMeta
from tracelake.codec.validate import PreparedSpans, SpanRules, prepare_spans
from tracelake.config import Config
from tracelake.db import TraceDB
from tracelake.errors import InvalidInputError, ObjectNotFoundError, TracelakeError
from tracelake.ingester import metrics
from tracelake.ingester.flush_journal import FlushEntry, FlushJournal
from tracelake.ingester.instance import REASON_TRACE_TOO_LARGE, HeadBlock, TenantInstance
from tracelake.ingester.limits import Overrides
from tracelake.model.ids import id_matrix
from tracelake.push import PushError
from tracelake.wal import WAL, WALError

log = logging.getLogger(__name__)
_FLUSH_RETRY_SECONDS = 5.0


@dataclass
class PushOutcome:
    accepted: int
    refused: Counter[str]


def span_keys(table: pa.Table) -> pa.Array:
    """One binary key per span (trace id, span id, start, kind): what makes a replayed span a repeat."""
    n = table.num_rows
    start = table["start_time_unix_nano"].to_numpy().astype("<u8").view(np.uint8).reshape(n, 8)
    kind = table["kind"].to_numpy().astype("<i4").view(np.uint8).reshape(n, 4)
    parts = [id_matrix(table["trace_id"]), id_matrix(table["span_id"]), start, kind]
    joined = np.ascontiguousarray(np.concatenate(parts, axis=1))
    return pa.Array.from_buffers(pa.binary(joined.shape[1]), n, [None, pa.py_buffer(joined)])


class Ingester:
    def __init__(self, cfg: Config, db: TraceDB, overrides: Overrides, *, update_index: bool = True) -> None:
        """``update_index``: add each flushed block to the tenant index. Off when several ingesters
        share a bucket: the index is one object, and concurrent read-modify-writes would lose blocks
        (readers list the bucket instead; the compactor rebuilds the index)."""
        self.cfg = cfg
        self.update_index = update_index
        self.db = db
        self.overrides = overrides
        wal_cfg = cfg.storage.trace.wal
        self.wal = WAL(wal_cfg.path, fsync=wal_cfg.fsync, segment_bytes=wal_cfg.segment_bytes)
        self.journal = FlushJournal(wal_cfg.path)
        self.instances: dict[str, TenantInstance] = {}
        self._instances_lock = threading.Lock()
        self._inflight: Counter[int] = Counter()  # lowest segment a push in progress may write to
        self._inflight_lock = threading.Lock()
        self._flush_queue: queue.Queue[HeadBlock | None] = queue.Queue()
        self._completed: dict[str, list[tuple[BlockMeta, float]]] = {}
        self._stop = threading.Event()
        self._closing = False
        self._threads: list[threading.Thread] = []
        self.ready = False
        # Head blocks waiting to be written may hold at most this much before pushes are refused.
        self.max_pending_flush_bytes = 2 * cfg.ingester.max_block_bytes

    def pending_flush_bytes(self) -> int:
        return sum(h.bytes for inst in list(self.instances.values()) for h in list(inst.flushing))

    # ----- lifecycle

    def start(self) -> None:
        self.replay()
        self._threads = [
            threading.Thread(target=self._check_loop, name="ingester-flush-check", daemon=True),
            threading.Thread(target=self._flush_loop, name="ingester-flusher", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.ready = True

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting, flush everything held, within ``timeout``; False if time ran out.

        Whatever is not flushed in time stays in the WAL and is replayed at the next start.
        """
        deadline = time.monotonic() + timeout
        self._closing = True
        self.ready = False
        self._stop.set()
        self._flush_queue.put(None)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        done = self._flush_everything(deadline)
        if done:
            self.wal.close()
        return done

    # ----- write path

    def rules(self, tenant: str) -> SpanRules:
        d = self.cfg.distributor
        return SpanRules(
            max_span_age_ns=int(d.max_span_age * 1e9),
            max_span_future_ns=int(d.max_span_future * 1e9),
            max_attribute_bytes=self.overrides.for_tenant(tenant).max_attribute_bytes,
        )

    def instance(self, tenant: str) -> TenantInstance:
        inst = self.instances.get(tenant)
        if inst is None:
            with self._instances_lock:
                inst = self.instances.setdefault(tenant, TenantInstance(tenant))
        return inst

    def push(
        self, tenant: str, prepared: PreparedSpans, payload: bytes, received_unix_nano: int
    ) -> PushOutcome:
        """Make ``prepared`` durable (WAL) and live; the caller has validated it."""
        if self._closing:
            raise PushError(
                503, "the ingester is shutting down; retry", reason="shutting_down", retry_after=1
            )
        pending = self.pending_flush_bytes()
        if pending > self.max_pending_flush_bytes:
            # Backpressure: writing blocks is behind ingestion. Refusing (retryably) keeps memory
            # bounded; OTLP clients retry a 503 after Retry-After.
            raise PushError(
                503,
                f"the ingester is behind on writing blocks ({pending} bytes waiting); retry",
                reason="flush_backpressure",
                retry_after=1,
            )
        refused: Counter[str] = Counter(prepared.rejected)
        if prepared.table.num_rows == 0:
            return PushOutcome(0, refused)
        with self._inflight_lock:
            floor = self.wal.current_segment
            self._inflight[floor] += 1
        try:
            try:
                segment = self.wal.append(tenant, payload, received_unix_nano)
            except (OSError, WALError) as exc:
                log.error("WAL append failed", extra={"tenant": tenant, "error": str(exc)})
                raise PushError(503, f"cannot write the WAL: {exc}", reason="wal_failed") from exc
            limits = self.overrides.for_tenant(tenant)
            kept, too_large = self.instance(tenant).append(
                prepared.table, segment, len(payload), time.monotonic(), limits.max_bytes_per_trace
            )
        finally:
            with self._inflight_lock:
                self._inflight[floor] -= 1
                if not self._inflight[floor]:
                    del self._inflight[floor]
        if too_large:
            refused[REASON_TRACE_TOO_LARGE] += too_large
        return PushOutcome(kept.num_rows, refused)

    # ----- cutting and flushing

    def cut(self, now: float | None = None, force: bool = False) -> int:
        """Cut idle traces to head blocks and queue the head blocks that are due; returns blocks queued."""
        now = time.monotonic() if now is None else now
        icfg = self.cfg.ingester
        queued = 0
        for inst in list(self.instances.values()):
            inst.cut_idle(now, icfg.trace_idle_period, everything=force)
            head = inst.take_head(now, icfg.max_block_duration, icfg.max_block_bytes, force=force)
            if head is not None:
                self._flush_queue.put(head)
                queued += 1
            metrics.live_traces.labels(inst.tenant).set(inst.live_trace_count())
            metrics.head_block_bytes.labels(inst.tenant).set(inst.head_bytes())
        metrics.flush_queue_length.set(self._flush_queue.qsize())
        self._expire_completed(now)
        return queued

    def _check_loop(self) -> None:
        while not self._stop.wait(self.cfg.ingester.flush_check_period):
            try:
                self.cut()
                self.overrides.reload()
            except Exception:  # never let the loop die: the next check retries
                log.exception("flush check failed")

    def _flush_loop(self) -> None:
        while True:
            head = self._flush_queue.get()
            if head is None:
                return  # shutdown: its final pass flushes what is left
            if not self._flush(head):
                self._flush_queue.put(head)
                if self._stop.wait(_FLUSH_RETRY_SECONDS):
                    return
            metrics.flush_queue_length.set(self._flush_queue.qsize())

    def _flush(self, head: HeadBlock) -> bool:
        """Write one head block as a block; True when it is in the backend."""
        tenant = head.tenant
        max_segment = max(head.segments())
        if self.wal.current_segment <= max_segment:
            self.wal.roll()  # so the segments holding this block can be closed and removed
        block_id = str(uuid.uuid4())
        started = time.monotonic()
        try:
            self.journal.add(FlushEntry(block_id, tenant, max_segment))
            failpoints.hit("flush.after_journal")
            meta = self.db.write_block(
                tenant, head.spans(), block_id=block_id, update_index=self.update_index
            )
            failpoints.hit("flush.after_meta")
        except TracelakeError as exc:
            metrics.flush_failures.labels(tenant).inc()
            log.error("flush failed, will retry", extra={"tenant": tenant, "error": str(exc)})
            return False
        metrics.flush_duration.observe(time.monotonic() - started)
        metrics.blocks_flushed.labels(tenant).inc()
        self._completed.setdefault(tenant, []).append((meta, time.monotonic()))
        self.instance(tenant).flushed(head)
        self.cleanup_wal()
        failpoints.hit("flush.after_cleanup")
        log.info(
            "block flushed",
            extra={
                "tenant": tenant,
                "block": block_id,
                "spans": meta.total_spans,
                "traces": meta.total_traces,
            },
        )
        return True

    def cleanup_wal(self) -> list[int]:
        """Delete WAL segments no span in memory (or being pushed) comes from."""
        with self._inflight_lock:
            needed = [self.wal.current_segment, *self._inflight]
            needed += [s for inst in list(self.instances.values()) if (s := inst.min_segment()) is not None]
            removed = self.wal.remove_segments_below(min(needed))
        remaining = self.wal.segments()
        self.journal.prune(min(remaining) if remaining else None)
        metrics.wal_bytes.set(self.wal.disk_bytes())
        return removed

    def _flush_everything(self, deadline: float) -> bool:
        """Cut and write everything held; gives up at ``deadline`` (the WAL keeps what is left).

        The writes run in a daemon thread so that a backend that hangs or keeps failing cannot hold
        the process past its shutdown timeout (Tempo 2.7 hangs here).
        """
        self.cut(force=True)
        pending: list[HeadBlock] = []
        while not self._flush_queue.empty():
            head = self._flush_queue.get_nowait()
            if head is not None:
                pending.append(head)
        result = {"done": False}

        def write_all() -> None:
            result["done"] = all([self._flush(head) for head in pending])

        writer = threading.Thread(target=write_all, name="ingester-final-flush", daemon=True)
        writer.start()
        writer.join(max(0.0, deadline - time.monotonic()))
        if writer.is_alive() or not result["done"]:
            log.warning("shutdown: not every block was written; the WAL keeps those spans for the next start")
            return False
        return True

    def _expire_completed(self, now: float) -> None:
        timeout = self.cfg.ingester.complete_block_timeout
        for tenant, blocks in self._completed.items():
            self._completed[tenant] = [(m, t) for m, t in blocks if now - t < timeout]

    # ----- replay

    def replay(self) -> int:
        """Rebuild live traces from the WAL, without the spans that flushed blocks already hold."""
        skip = self._flushed_span_keys()
        replayed = 0
        for record in self.wal.replay():
            metrics.wal_replay_records.inc()
            try:
                prepared = prepare_spans(record.payload, record.received_unix_nano, self.rules(record.tenant))
            except InvalidInputError:
                continue  # it was valid when accepted; a decoder change must not stop the start
            table = prepared.table
            if skip.get(record.tenant) is not None and table.num_rows:
                seen = pc.is_in(span_keys(table), skip[record.tenant])
                table = table.filter(pc.invert(seen))
                metrics.wal_replay_spans_skipped.inc(prepared.table.num_rows - table.num_rows)
            if table.num_rows:
                limits = self.overrides.for_tenant(record.tenant)
                self.instance(record.tenant).append(
                    table, record.segment, len(record.payload), time.monotonic(), limits.max_bytes_per_trace
                )
                replayed += table.num_rows
        metrics.wal_corrupt_segments.inc(self.wal.stats.corrupt_segments)
        if replayed:
            log.info("WAL replayed", extra={"spans": replayed})
            self.cut(force=True)  # replayed data is old: write it out now, not after max_block_duration
            while not self._flush_queue.empty():
                head = self._flush_queue.get_nowait()
                if head is not None and not self._flush(head):
                    self._flush_queue.put(head)
                    break
        self.cleanup_wal()
        return replayed

    def _flushed_span_keys(self) -> dict[str, pa.Array]:
        keys_by_tenant: dict[str, list[pa.Array]] = {}
        for entry in self.journal.entries:
            meta_key = keys.block_key(entry.tenant, entry.block_id, keys.META)
            if not self.db.backend.exists(meta_key):
                # never became visible: remove what the crashed writer left
                self.db.backend.delete_prefix(keys.block_prefix(entry.tenant, entry.block_id))
                continue
            try:
                data = pq.read_table(
                    self.db.backend.open_input_file(keys.block_key(entry.tenant, entry.block_id, keys.DATA)),
                    columns=["trace_id", "span_id", "start_time_unix_nano", "kind"],
                )
            except ObjectNotFoundError:
                continue
            keys_by_tenant.setdefault(entry.tenant, []).append(span_keys(data))
        return {t: pa.concat_arrays(parts) for t, parts in keys_by_tenant.items()}

    # ----- read path (recent data, for the querier)

    def find_trace(self, tenant: str, trace_id: bytes) -> list[pa.Table]:
        inst = self.instances.get(tenant)
        parts = inst.find_trace(trace_id) if inst else []
        for meta, _ in list(self._completed.get(tenant, [])):
            found = self.db.reader(meta).find_trace(trace_id)
            if found is not None:
                parts.append(found)
        return parts

    def recent_spans(self, tenant: str) -> list[pa.Table]:
        inst = self.instances.get(tenant)
        return inst.tables() if inst else []

    def recent_blocks(self, tenant: str) -> list[BlockMeta]:
        return [meta for meta, _ in list(self._completed.get(tenant, []))]
