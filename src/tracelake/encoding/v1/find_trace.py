"""Find one trace in a block: id range, then one bloom shard, then one row group of ``data.parquet``.

A missing id is usually answered by the bloom alone (microseconds, once the shard is cached); a present
one costs a single row-group read, because writers never split a trace across row groups.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import FORMAT_V1, BlockMeta, check_format
from tracelake.bloom import BloomShard, ShardedBloom, hash_trace_id
from tracelake.bloom.cache import BloomCache
from tracelake.codec.attributes_wire import ATTRIBUTES_LIST
from tracelake.encoding.v1.layout import READ_AS_DICTIONARY, from_block_rows
from tracelake.errors import BlockFormatError, ObjectNotFoundError

# Memory a parsed ``data.parquet`` footer holds per row group (Parquet's metadata of 43 column chunks,
# in C++ objects outside Arrow's pool): 37.1 KiB measured on a 251-row-group block of 1M spans, against
# 3.9 KB per row group in the file. A reader keeps its footer parsed, so a process holding readers of
# many large blocks must bound them by this, not by count. Blocks of format tl2 (one ``attributes``
# column instead of six leaves) hold 28.5 KiB per row group; the figure of tl1, the larger, is kept.
PARSED_FOOTER_BYTES_PER_ROW_GROUP = 38 << 10
# What a Parquet writer keeps per row group written until the file closes (the footer it will write):
# 39 KiB measured writing 1000 row groups of 4000 spans without a page index.
WRITER_METADATA_BYTES_PER_ROW_GROUP = 40 << 10


class BlockReader:
    """Reads one block; caches its bloom shards and parsed Parquet footer for repeated lookups."""

    def __init__(
        self,
        backend: Backend,
        meta: BlockMeta,
        bloom_cache: BloomCache | None = None,
        on_footer_parsed: Callable[[BlockReader], None] | None = None,
    ) -> None:
        """``on_footer_parsed(reader)`` is called once the reader holds its parsed footer
        (``footer_bytes`` of memory), so that an owner of many readers can account for them."""
        check_format(meta.format, f"block {meta.tenant_id}/{meta.block_id}")
        self.backend = backend
        self.meta = meta
        self._on_footer_parsed = on_footer_parsed
        self._max_ids = [rg.max_id for rg in meta.row_groups]
        self._shards: dict[int, BloomShard] = {}  # used when no shared cache is given
        self._bloom_cache = bloom_cache
        self._parquet: pq.ParquetFile | None = None
        self._chunk_sizes: dict[str, np.ndarray] | None = None
        # answers derived from the block that callers keep with it (blocks never change)
        self.memo: dict[str, object] = {}
        self._lock = threading.Lock()
        # One ParquetFile is not safe to read from two threads at once (concurrent trace-by-id
        # requests on the same block failed with "ReadRangeCache did not find matching cache entry").
        self._read_lock = threading.Lock()

    def _key(self, name: str) -> str:
        return keys.block_key(self.meta.tenant_id, self.meta.block_id, name)

    def _where(self, name: str) -> str:
        return f"block {self.meta.tenant_id}/{self.meta.block_id}: {name}"

    def _shard(self, index: int) -> BloomShard:
        if self._bloom_cache is not None:
            return self._bloom_cache.get(self.meta.block_id, index, lambda: self._load_shard(index))
        shard = self._shards.get(index)
        if shard is None:
            shard = self._shards[index] = self._load_shard(index)
        return shard

    def _load_shard(self, index: int) -> BloomShard:
        name = keys.bloom_name(index)
        try:
            return BloomShard.from_bytes(self.backend.read(self._key(name)))
        except ObjectNotFoundError as exc:
            raise BlockFormatError(f"{self._where(name)} is missing") from exc

    def parquet(self) -> pq.ParquetFile:
        with self._lock:
            if self._parquet is None:
                try:
                    self._parquet = pq.ParquetFile(
                        self.backend.open_input_file(self._key(keys.DATA)),
                        read_dictionary=READ_AS_DICTIONARY,
                        # Without it each column chunk is its own ranged GET: 43 per row group.
                        pre_buffer=self.backend.coalesce_reads,
                    )
                except ObjectNotFoundError as exc:
                    raise BlockFormatError(f"{self._where(keys.DATA)} is missing") from exc
                except (pa.ArrowInvalid, OSError) as exc:
                    raise BlockFormatError(f"{self._where(keys.DATA)} is corrupt: {exc}") from exc
                parsed = True
            else:
                parsed = False
            parquet = self._parquet
        if parsed and self._on_footer_parsed is not None:
            self._on_footer_parsed(self)
        return parquet

    @property
    def footer_bytes(self) -> int:
        """Estimated memory of the parsed footer (0 until a read needed it)."""
        if self._parquet is None:
            return 0
        return len(self.meta.row_groups) * PARSED_FOOTER_BYTES_PER_ROW_GROUP

    def may_contain(self, trace_id: bytes) -> bool:
        hex_id = trace_id.hex()
        if hex_id < self.meta.min_id or hex_id > self.meta.max_id:
            return False
        h = hash_trace_id(trace_id)
        return self._shard(ShardedBloom.shard_of(h, self.meta.bloom_shards)).may_contain_hash(h)

    def find_trace(self, trace_id: bytes) -> pa.Table | None:
        """The trace's spans (SPAN_SCHEMA), or None when the block does not hold it."""
        if not self.may_contain(trace_id):
            return None
        hex_id = trace_id.hex()
        group = bisect_left(self._max_ids, hex_id)
        if group == len(self._max_ids) or self.meta.row_groups[group].min_id > hex_id:
            return None
        needle = pa.scalar(trace_id, pa.binary(16))
        # A bloom false positive (1% per block: about one block in a hundred for a missing id) costs
        # only the small trace_id column; the whole row group is decoded when the trace is there.
        # Where a read is a round trip, the probe would cost more than the rare false positive.
        probe = not self.backend.coalesce_reads
        if (
            probe
            and not pc.any(pc.equal(self._read_row_group(group, ["trace_id"])["trace_id"], needle)).as_py()
        ):
            return None
        rows = self._read_row_group(group)
        found = rows.filter(pc.equal(rows["trace_id"], needle))
        return from_block_rows(found) if found.num_rows else None

    def _read_row_group(self, group: int, columns: list[str] | None = None) -> pa.Table:
        parquet = self.parquet()
        try:
            with self._read_lock:
                return parquet.read_row_group(group, columns=columns, use_threads=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BlockFormatError(f"{self._where(keys.DATA)} is corrupt: {exc}") from exc

    def column_chunk_sizes(self) -> dict[str, np.ndarray]:
        """Compressed bytes per column (top-level name or leaf path) and row group (Tempo's
        ``inspectedBytes``), computed once."""
        if self._chunk_sizes is None:
            metadata = self.parquet().metadata
            sizes: dict[str, np.ndarray] = {}
            for g in range(metadata.num_row_groups):
                group = metadata.row_group(g)
                for j in range(group.num_columns):
                    chunk = group.column(j)
                    path = chunk.path_in_schema
                    for name in {path, path.split(".")[0]}:  # a leaf's own size, and its column's
                        sizes.setdefault(name, np.zeros(metadata.num_row_groups, np.int64))[g] += (
                            chunk.total_compressed_size
                        )
            self._chunk_sizes = sizes
        return self._chunk_sizes

    def read_row_groups(self, groups: list[int], columns: list[str]) -> pa.Table:
        """Several row groups in one read (search): one call instead of one per group."""
        parquet = self.parquet()
        try:
            with self._read_lock:
                return parquet.read_row_groups(groups, columns=columns, use_threads=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BlockFormatError(f"{self._where(keys.DATA)} is corrupt: {exc}") from exc

    def read_attributes(self, groups: list[int]) -> pa.ChunkedArray:
        """The span attributes of row groups as stored (``SpanFrame`` reads both forms): format tl2's
        wire bytes in one read of a flat column, tl1's typed lists one row group at a time (Arrow
        reads a nested column of one row group per call)."""
        if self.meta.format == FORMAT_V1:
            parts = [self.read_row_groups([g], ["attributes"])["attributes"] for g in groups]
            return pa.chunked_array([c for p in parts for c in p.chunks], ATTRIBUTES_LIST)
        return self.read_row_groups(groups, ["attributes"])["attributes"]

    def read_summary(self) -> pa.Table:
        """The block's ``summary.parquet``: one row per trace, in trace id order."""
        try:
            return pq.read_table(pa.BufferReader(self.backend.read(self._key(keys.SUMMARY))))
        except ObjectNotFoundError as exc:
            raise BlockFormatError(f"{self._where(keys.SUMMARY)} is missing") from exc
        except (pa.ArrowInvalid, OSError) as exc:
            raise BlockFormatError(f"{self._where(keys.SUMMARY)} is corrupt: {exc}") from exc

    def iter_spans(self):
        """Every span of the block, one row group at a time (SPAN_SCHEMA tables)."""
        for group in range(self.parquet().num_row_groups):
            yield from_block_rows(self._read_row_group(group))
