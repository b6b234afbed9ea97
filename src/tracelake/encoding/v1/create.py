"""Write a block: data, summary and bloom objects first, ``meta.json`` last.

A reader sees a block only once its ``meta.json`` exists, so a writer that dies half way leaves an
invisible folder (cleaned up later by the compactor), never a half-readable block.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracelake import failpoints
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import FORMAT_V1, BlockMeta, RowGroupRange
from tracelake.bloom import ShardedBloom
from tracelake.config import BlockConfig
from tracelake.encoding.v1.layout import (
    BLOCK_SCHEMA,
    generic_attribute_keys,
    resource_attribute_keys,
    row_group_cuts,
    sort_spans,
    to_block_rows,
)
from tracelake.encoding.v1.summary import summarize, summary_to_parquet, trace_ends
from tracelake.model.ids import id_matrix, trace_starts

# Columns whose values repeat get dictionary pages. Ids, times and raw wire bytes are near-unique, and
# attribute values (URLs, statements, user ids) compress better with zstd alone: 46.5 instead of
# 51.1 B/span on benchmarks/storage_bench.py's spans.
_NO_DICTIONARY = {"trace_id", "span_id", "parent_span_id", "events", "links", "attributes"}
_DICTIONARY_LEAVES = [
    "attributes.list.element.key",
    "attributes.list.element.type",
    "attributes.list.element.int",
    "attributes.list.element.bytes",  # almost always empty: a dictionary of one value, read as indices
]
_BYTE_STREAM_SPLIT = {"start_time_unix_nano", "duration_nano"}
# Statistics where queries prune row groups; the others would only grow the footer.
_STATISTICS = [
    "trace_id",
    "start_time_unix_nano",
    "duration_nano",
    "service_name",
    "name",
    "status_code",
    "kind",
    "http_status_code",
    "http_response_status_code",
]


def _writer_options(cfg: BlockConfig) -> dict:
    dictionary = [
        f.name for f in BLOCK_SCHEMA if f.name not in _NO_DICTIONARY and f.name not in _BYTE_STREAM_SPLIT
    ] + _DICTIONARY_LEAVES
    return dict(
        compression="zstd",
        compression_level=cfg.parquet_zstd_level,
        use_dictionary=dictionary,
        column_encoding={name: "BYTE_STREAM_SPLIT" for name in _BYTE_STREAM_SPLIT},
        write_statistics=_STATISTICS,
        write_page_index=True,
        sorting_columns=[
            pq.SortingColumn(BLOCK_SCHEMA.get_field_index("trace_id")),
            pq.SortingColumn(BLOCK_SCHEMA.get_field_index("start_time_unix_nano")),
        ],
    )


def _write_data(rows: pa.Table, cuts: list[int], path: Path, cfg: BlockConfig) -> int:
    """Write ``data.parquet`` one row group per cut; returns the footer size."""
    with pq.ParquetWriter(path, BLOCK_SCHEMA, **_writer_options(cfg)) as writer:
        for begin, end in itertools.pairwise(cuts):
            writer.write_table(rows.slice(begin, end - begin), row_group_size=end - begin)
    with open(path, "rb") as f:
        f.seek(-8, io.SEEK_END)
        return int.from_bytes(f.read(4), "little") + 8


def write_block(
    backend: Backend,
    tenant: str,
    spans: pa.Table,
    cfg: BlockConfig,
    *,
    compaction_level: int = 0,
    replaces: list[str] | None = None,
    block_id: str | None = None,
) -> BlockMeta:
    """Write ``spans`` (SPAN_SCHEMA, any order, at least one span) as a new block of ``tenant``."""
    if spans.num_rows == 0:
        raise ValueError("a block needs at least one span")
    block_id = block_id or str(uuid.uuid4())
    ordered = sort_spans(spans)
    rows = to_block_rows(ordered)
    summary = summarize(ordered)
    trace_ids = id_matrix(ordered["trace_id"])
    cuts = row_group_cuts(trace_starts(trace_ids), cfg.parquet_row_group_size_spans)
    bloom = ShardedBloom.build(
        summary["trace_id"], cfg.bloom_filter_false_positive, cfg.bloom_filter_shard_size_bytes
    )
    files: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tracelake-block-") as tmp:
        data_path = Path(tmp) / keys.DATA
        footer_size = _write_data(rows, cuts, data_path, cfg)
        files[keys.DATA] = data_path.stat().st_size
        backend.write_file(keys.block_key(tenant, block_id, keys.DATA), data_path)
    summary_bytes = summary_to_parquet(summary, cfg.parquet_zstd_level)
    backend.write(keys.block_key(tenant, block_id, keys.SUMMARY), summary_bytes)
    files[keys.SUMMARY] = len(summary_bytes)
    for shard, blob in enumerate(bloom.to_bytes_list()):
        backend.write(keys.block_key(tenant, block_id, keys.bloom_name(shard)), blob)
        files[keys.bloom_name(shard)] = len(blob)
    meta = BlockMeta(
        format=FORMAT_V1,
        block_id=block_id,
        tenant_id=tenant,
        start_unix_nano=int(summary["start_time_unix_nano"].to_numpy().min()),
        end_unix_nano=int(trace_ends(summary).max()),
        min_id=trace_ids[0].tobytes().hex(),
        max_id=trace_ids[-1].tobytes().hex(),
        total_traces=summary.num_rows,
        total_spans=ordered.num_rows,
        size=sum(files.values()),
        compaction_level=compaction_level,
        bloom_shards=len(bloom.shards),
        bloom_false_positive=cfg.bloom_filter_false_positive,
        footer_size=footer_size,
        row_groups=[
            RowGroupRange(
                min_id=trace_ids[begin].tobytes().hex(),
                max_id=trace_ids[end - 1].tobytes().hex(),
                first_row=begin,
                rows=end - begin,
            )
            for begin, end in itertools.pairwise(cuts)
        ],
        files=files,
        replaces=list(replaces or []),
        span_attribute_keys=generic_attribute_keys(ordered),
        resource_attribute_keys=resource_attribute_keys(ordered),
        created_at=datetime.fromtimestamp(time.time(), UTC).isoformat(),
    )
    failpoints.hit("block.before_meta")
    backend.write(keys.block_key(tenant, block_id, keys.META), meta.to_bytes())
    return meta
