"""Sharded bloom filters on 16-byte trace ids, stored apart from a block's Parquet data.

Kept apart so a querier can hold every block's bloom in memory and open only the blocks that may
hold a trace. The on-disk format (version 1) is documented in `tracelake.bloom.filter`, the id hash
(two SplitMix64 finalizer rounds over the id's halves) in `tracelake.bloom.hashing`.
"""

from tracelake.bloom.filter import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    BloomShard,
    ShardedBloom,
    optimal_bits,
    optimal_k,
)
from tracelake.bloom.hashing import TRACE_ID_SIZE, hash_trace_id, hash_trace_ids, mix64

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "TRACE_ID_SIZE",
    "BloomShard",
    "ShardedBloom",
    "hash_trace_id",
    "hash_trace_ids",
    "mix64",
    "optimal_bits",
    "optimal_k",
]
