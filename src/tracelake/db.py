"""A tenant's traces in the object store: write blocks, list them, find a trace across them.

The one entry point services and the command line share (Tempo's ``tempodb``): it knows block format
versions and the tenant index, and only the ``Backend`` interface of the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from tracelake import read_metrics
from tracelake.backend import Backend
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.cache import BlockListCache
from tracelake.blocklist.tenant_index import (
    BlockList,
    index_lock,
    list_blocks,
    read_tenant_index,
    write_tenant_index,
)
from tracelake.bloom.cache import BloomCache
from tracelake.config import TraceStorageConfig
from tracelake.encoding.v1.column_cache import ColumnCache
from tracelake.encoding.v1.create import write_block
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.errors import BlockFormatError

_READER_CACHE_SIZE = 1024
_LOOKUP_THREADS = 8
_SUMMARY_CACHE_BYTES = 256 * 2**20  # per-trace summaries kept for search (about 100 B per trace)


class TraceDB:
    def __init__(self, backend: Backend, cfg: TraceStorageConfig) -> None:
        self.backend = backend
        self.cfg = cfg
        self._readers: OrderedDict[str, BlockReader] = OrderedDict()
        self._readers_lock = threading.Lock()
        self._footer_bytes = 0  # parsed footers of the cached readers (each counted once parsed)
        self._footer_counted: dict[str, int] = {}
        self._block_lists = BlockListCache(backend, cfg.blocklist_poll, cfg.blocklist_poll_stale_tenant_index)
        self._pool = ThreadPoolExecutor(_LOOKUP_THREADS, thread_name_prefix="tracelake-lookup")
        self._blooms = BloomCache(cfg.bloom_cache_max_bytes)
        self.columns = ColumnCache(cfg.search_cache_max_bytes)
        self._summaries: OrderedDict[str, pa.Table] = OrderedDict()
        self._summary_bytes = 0
        self._summaries_lock = threading.Lock()

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for reading several blocks at once (lookups, searches)."""
        return self._pool

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.backend.close()

    def write_block(self, tenant: str, spans: pa.Table, *, update_index: bool = True, **kwargs) -> BlockMeta:
        """Write one block of ``spans``; with ``update_index``, add it to the tenant index."""
        meta = write_block(self.backend, tenant, spans, self.cfg.block, **kwargs)
        if update_index:
            self.add_to_index(tenant, meta)
        return meta

    def add_to_index(self, tenant: str, meta: BlockMeta) -> None:
        """Add one new block to the tenant index (one GET and one PUT, whatever the block count)."""
        with index_lock(self.backend):
            try:
                blocks = read_tenant_index(self.backend, tenant)
            except BlockFormatError:
                blocks = None
            if blocks is None:
                blocks = list_blocks(self.backend, tenant)
            if all(m.block_id != meta.block_id for m in blocks.metas):
                blocks.metas.append(meta)
            write_tenant_index(self.backend, tenant, blocks)
        self._block_lists.invalidate(tenant)

    def block_list(self, tenant: str) -> BlockList:
        """The tenant's blocks as of the last poll (at most ``blocklist_poll`` old)."""
        return self._block_lists.get(tenant)

    def reader(self, meta: BlockMeta) -> BlockReader:
        """A cached reader per block (its bloom shards and Parquet footer stay parsed), least recently
        used out past ``_READER_CACHE_SIZE`` readers or ``footer_cache_max_bytes`` of parsed footers."""
        with self._readers_lock:  # lookups run on several threads
            reader = self._readers.get(meta.block_id)
            if reader is None:
                reader = BlockReader(self.backend, meta, self._blooms, self._footer_parsed)
                self._readers[meta.block_id] = reader
                self._evict_readers(keep=reader)
            else:
                self._readers.move_to_end(meta.block_id)
            return reader

    @property
    def footer_cache_bytes(self) -> int:
        """Estimated memory of the parsed footers the cached readers hold."""
        return self._footer_bytes

    def _footer_parsed(self, reader: BlockReader) -> None:
        with self._readers_lock:
            if self._readers.get(reader.meta.block_id) is not reader:
                return  # dropped from the cache meanwhile: its footer goes with it
            counted = reader.footer_bytes
            self._footer_counted[reader.meta.block_id] = counted
            self._footer_bytes += counted
            self._evict_readers(keep=reader)

    def _evict_readers(self, keep: BlockReader) -> None:
        """Drop least recently used readers (never ``keep``) while over the count or footer budget.
        A lookup still holding a dropped reader finishes with it."""

        def over() -> bool:
            limit = self.cfg.footer_cache_max_bytes
            return len(self._readers) > _READER_CACHE_SIZE or self._footer_bytes > limit

        oldest_first = list(self._readers) if over() else []  # no copy on the common path
        for block_id in oldest_first:
            if not over():
                break
            if self._readers[block_id] is keep:
                continue
            del self._readers[block_id]
            self._footer_bytes -= self._footer_counted.pop(block_id, 0)
            read_metrics.footer_cache_evictions.inc()
        read_metrics.footer_cache_bytes.set(self._footer_bytes)

    def summary(self, meta: BlockMeta) -> pa.Table:
        """A block's per-trace summary, cached (least recently used first out, bounded in bytes)."""
        with self._summaries_lock:
            table = self._summaries.get(meta.block_id)
            if table is not None:
                self._summaries.move_to_end(meta.block_id)
                return table
        table = self.reader(meta).read_summary()
        with self._summaries_lock:
            if meta.block_id not in self._summaries:
                self._summaries[meta.block_id] = table
                self._summary_bytes += table.nbytes
            while self._summary_bytes > _SUMMARY_CACHE_BYTES and len(self._summaries) > 1:
                _, old = self._summaries.popitem(last=False)
                self._summary_bytes -= old.nbytes
            read_metrics.summary_cache_bytes.set(self._summary_bytes)
        return table

    def find_trace(
        self,
        tenant: str,
        trace_id: bytes,
        window_unix_nano: tuple[int, int] | None = None,
        skip: set[str] | frozenset[str] = frozenset(),
        only: Callable[[str], bool] | None = None,
    ) -> pa.Table | None:
        """Spans of ``trace_id`` from every block that holds some of them, or None.

        ``skip``: blocks already read by someone else (the ingester that wrote them); ``only``: the
        blocks this job covers (a query-frontend's shard).
        Blocks are pruned by id range, ``window_unix_nano`` (start, end) and their bloom filter in the
        calling thread (microseconds each, once the shard is cached); only blocks that may hold the
        trace are read, in parallel when there are several.
        """
        hex_id = trace_id.hex()
        lo, hi = window_unix_nano or (0, 2**64)
        candidates = [
            self.reader(m)
            for m in self.block_list(tenant).metas
            if m.min_id <= hex_id <= m.max_id
            and m.end_unix_nano >= lo
            and m.start_unix_nano <= hi
            and m.block_id not in skip
            and (only is None or only(m.block_id))
        ]
        readers = [r for r in candidates if r.may_contain(trace_id)]
        if len(readers) > 1:
            found = self._pool.map(lambda reader: reader.find_trace(trace_id), readers)
        else:
            found = [r.find_trace(trace_id) for r in readers]
        parts = [t for t in found if t is not None]
        if not parts:
            return None
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
