"""Whole columns of blocks kept in memory for search, within a byte budget.

Search reads the same few narrow columns of the same recent blocks again and again (service name,
span name, status, durations...). Decoding them from Parquet costs ~40-100 µs per column and row group;
held decoded (dictionary indices or plain numbers: 4-8 bytes per span), a repeated search costs only its
compute. Nested columns (attributes, events, links) are never cached: large, and read by few queries.
``storage.trace.search_cache_max_bytes`` bounds it; least recently used columns go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pyarrow as pa

from tracelake import read_metrics
from tracelake.encoding.v1.find_trace import BlockReader

NOT_CACHED = frozenset({"attributes", "events", "links"})


class ColumnCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._columns: OrderedDict[tuple[str, str], pa.Array] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def cacheable(self, columns: list[str]) -> bool:
        return self.max_bytes > 0 and not NOT_CACHED.intersection(columns)

    def affordable(self, reader: BlockReader, columns: tuple[str, ...] | list[str]) -> bool:
        """Whether keeping these columns of this block takes at most a twentieth of the budget (a
        search lists a few spans: worth filling the cache for small blocks, not for big ones)."""
        return reader.meta.total_spans * 8 * len(columns) <= self.max_bytes // 20

    def peek(self, reader: BlockReader, column: str) -> pa.Array | None:
        """The column if memory holds it, without reading or counting."""
        with self._lock:
            return self._columns.get((reader.meta.block_id, column))

    def get(self, reader: BlockReader, column: str) -> pa.Array:
        """The block's whole ``column`` as one array (dictionaries unified across row groups)."""
        key = (reader.meta.block_id, column)
        with self._lock:
            array = self._columns.get(key)
            if array is not None:
                self._columns.move_to_end(key)
        if array is not None:
            read_metrics.search_cache_requests.labels("hit").inc()
            return array
        read_metrics.search_cache_requests.labels("miss").inc()
        groups = list(range(len(reader.meta.row_groups)))
        chunked = reader.read_row_groups(groups, [column])[column]
        if pa.types.is_dictionary(chunked.type) and chunked.num_chunks > 1:
            chunked = chunked.unify_dictionaries()
        array = chunked.combine_chunks() if chunked.num_chunks else pa.array([], chunked.type)
        with self._lock:
            if key not in self._columns:
                self._columns[key] = array
                self._bytes += array.nbytes
            while self._bytes > self.max_bytes and self._columns:
                _, old = self._columns.popitem(last=False)
                self._bytes -= old.nbytes
            read_metrics.search_cache_bytes.set(self._bytes)
        return array
