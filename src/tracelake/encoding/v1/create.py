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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tracelake import failpoints
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import WRITTEN_FORMAT, BlockMeta, RowGroupRange
from tracelake.bloom import ShardedBloom
from tracelake.config import BlockConfig
from tracelake.encoding.v1.layout import (
    BLOCK_SCHEMA,
    MAX_INDEXED_KEYS,
    generic_attribute_keys,
    resource_attribute_keys,
    row_group_cuts,
    sort_spans,
    to_block_rows,
)
from tracelake.encoding.v1.summary import SUMMARY_SCHEMA, summarize_rows, summary_write_options, trace_ends
from tracelake.model.ids import id_matrix, trace_starts

# Columns whose values repeat get dictionary pages. Ids, times and raw wire bytes are near-unique, and
# attribute values (URLs, statements, user ids) compress better with zstd alone: 46.5 instead of
# 51.1 B/span on benchmarks/storage_bench.py's spans.
_NO_DICTIONARY = {"trace_id", "span_id", "parent_span_id", "events", "links", "attributes"}
_BYTE_STREAM_SPLIT = {"start_time_unix_nano", "duration_nano"}
# Columns written without compression: random ids and small integers (already run-length or
# dictionary encoded) that zstd shrinks by under 0.3 B/span, while each compressed page costs a zstd
# call. On 120k merged spans (a 10-block compaction) writing 1.02 -> 0.95 and reading 0.62 -> 0.56
# µs/span, 52.3 -> 52.8 B/span. Then the dictionary-encoded strings whose values come from a short
# list (HTTP methods, db.system names) or a handful per cluster (namespaces, environments), so that
# their dictionary page stays small raw: 0.010-0.012 µs/span less each (write and read), +0.046
# B/span for the five. Strings of open-ended values (names, routes, methods of RPC services) stay
# compressed: their dictionary pages can be large.
_UNCOMPRESSED = {
    "span_id",
    "parent_index",
    "parent_span_id",
    "flags",
    "kind",
    "status_code",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "http_status_code",
    "http_response_status_code",
    "http_method",
    "http_request_method",
    "db_system",
    "deployment_environment",
    "k8s_namespace_name",
}
# Traces per row group of summary.parquet when a block is written in pieces (search reads it whole).
SUMMARY_GROUP_TRACES = 65536
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
    ]
    compressed = [f.name for f in BLOCK_SCHEMA if f.name not in _UNCOMPRESSED]
    return dict(
        compression={f.name: "none" if f.name in _UNCOMPRESSED else "zstd" for f in BLOCK_SCHEMA},
        compression_level={name: cfg.parquet_zstd_level for name in compressed},
        use_dictionary=dictionary,
        column_encoding={name: "BYTE_STREAM_SPLIT" for name in _BYTE_STREAM_SPLIT},
        write_statistics=_STATISTICS,
        # No page index: a row group (~4000 spans) is one or two pages per column, so it lets a reader
        # skip nothing that row-group statistics do not (pyarrow and DuckDB never read it), and the
        # writer keeps it in memory until the file closes: 57 -> 39 KiB per row group without it.
        write_page_index=False,
        sorting_columns=[
            pq.SortingColumn(BLOCK_SCHEMA.get_field_index("trace_id")),
            pq.SortingColumn(BLOCK_SCHEMA.get_field_index("start_time_unix_nano")),
        ],
    )


class BlockWriter:
    """Builds one block from whole-trace span tables given in trace-id order, one table at a time.

    The compactor feeds it the output of a streaming merge; ``write_block`` feeds it one sorted table.
    Rows go to a local ``data.parquet`` as soon as a row group is full and summary rows to a local
    ``summary.parquet`` every ``SUMMARY_GROUP_TRACES`` traces, so memory holds about one row group of
    pending rows plus 16 bytes per trace (the ids, for the bloom filter). ``finish`` uploads data,
    summary and blooms, then ``meta.json`` last.
    """

    def __init__(
        self,
        backend: Backend,
        tenant: str,
        cfg: BlockConfig,
        *,
        compaction_level: int = 0,
        replaces: list[str] | None = None,
        block_id: str | None = None,
        attribute_keys: dict[str, list[str] | None] | None = None,
    ) -> None:
        """``attribute_keys`` (``{"span": ..., "resource": ...}``, None for more than
        ``MAX_INDEXED_KEYS``) are the block's attribute keys when the caller knows them (a compaction:
        the union of its inputs'); otherwise the writer collects them from the rows."""
        self.backend = backend
        self.tenant = tenant
        self.cfg = cfg
        self.block_id = block_id or str(uuid.uuid4())
        self.compaction_level = compaction_level
        self.replaces = list(replaces or [])
        self._tmp = tempfile.TemporaryDirectory(prefix="tracelake-block-")
        self._data_path = Path(self._tmp.name) / keys.DATA
        self._parquet: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []  # block rows not yet in a row group (whole traces)
        self._pending_rows = 0
        # The summary goes to a local file in row groups of SUMMARY_GROUP_TRACES, so a large output
        # does not hold one summary row per trace in memory; only the trace ids stay (for the bloom).
        self._summary_path = Path(self._tmp.name) / keys.SUMMARY
        self._summary: pq.ParquetWriter | None = None
        self._summary_pending: list[pa.Table] = []
        self._summary_pending_rows = 0
        self._trace_ids: list[pa.Array] = []
        self._traces = 0
        self._start = 2**64
        self._end = 0
        self._row_groups: list[RowGroupRange] = []
        self.spans = 0  # rows given so far
        self._written_rows = 0
        self._last_id: bytes | None = None
        # Attribute keys for meta.json (search skips blocks without a key); None past MAX_INDEXED_KEYS.
        self._keys: dict[str, set[str] | None] = {"span": set(), "resource": set()}
        self._collect_keys = attribute_keys is None
        if attribute_keys is not None:
            self._keys = {kind: None if k is None else set(k) for kind, k in attribute_keys.items()}

    def add(self, sorted_spans: pa.Table) -> None:
        """Append whole traces (SPAN_SCHEMA, sorted by ``layout.sort_spans``), after every earlier one."""
        if sorted_spans.num_rows:
            self._collect_keys_of(sorted_spans)  # from the typed attribute lists, before packing
            self._append(to_block_rows(sorted_spans))

    def add_rows(self, rows: pa.Table) -> None:
        """Append whole traces as block rows (BLOCK_SCHEMA: ``layout.to_block_rows`` of spans sorted by
        ``layout.sort_spans``), after every earlier one."""
        if rows.num_rows:
            self._collect_keys_of(rows)
            self._append(rows)

    def _collect_keys_of(self, table: pa.Table) -> None:
        if not self._collect_keys:
            return
        for kind, find in (("span", generic_attribute_keys), ("resource", resource_attribute_keys)):
            known = self._keys[kind]
            found = None if known is None else find(table)
            union = None if known is None or found is None else known | set(found)
            self._keys[kind] = union if union is not None and len(union) <= MAX_INDEXED_KEYS else None

    def _append(self, rows: pa.Table) -> None:
        first = rows["trace_id"][0].as_py()
        if self._last_id is not None and first <= self._last_id:
            raise ValueError("traces must be added in increasing trace-id order, each trace once")
        self._last_id = rows["trace_id"][-1].as_py()
        summary = summarize_rows(rows)
        if self.spans:
            index = summary.schema.get_field_index("first_row")
            first_row = pc.add(summary["first_row"], pa.scalar(self.spans, pa.int64()))
            summary = summary.set_column(index, summary.schema.field(index), first_row)
        self._add_summary(summary)
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        self.spans += rows.num_rows
        # A full group is written as soon as one exists (the partial rest waits): waiting for two
        # held 4 MiB more of Arrow memory (pool peak 58 -> 54 MiB in `tracelake compact` on
        # benchmarks/compaction_bench.py's blocks).
        if self._pending_rows >= self.cfg.parquet_row_group_size_spans:
            self._flush_groups(final=False)

    def _add_summary(self, summary: pa.Table) -> None:
        self._trace_ids.append(summary["trace_id"].combine_chunks())
        self._traces += summary.num_rows
        self._start = min(self._start, int(pc.min(summary["start_time_unix_nano"]).as_py()))
        self._end = max(self._end, int(trace_ends(summary).max()))
        self._summary_pending.append(summary)
        self._summary_pending_rows += summary.num_rows
        if self._summary_pending_rows >= SUMMARY_GROUP_TRACES:
            self._flush_summary()

    def _flush_summary(self) -> None:
        if not self._summary_pending_rows:
            return
        if self._summary is None:
            self._summary = pq.ParquetWriter(
                self._summary_path, SUMMARY_SCHEMA, **summary_write_options(self.cfg.parquet_zstd_level)
            )
        table = pa.concat_tables(self._summary_pending)
        self._summary.write_table(table, row_group_size=table.num_rows)
        self._summary_pending, self._summary_pending_rows = [], 0

    def _flush_groups(self, final: bool) -> None:
        """Write full row groups from the pending rows; keep the last, partial one unless ``final``."""
        if not self._pending_rows:
            return
        # Chunks are written as they are (the Parquet writer takes chunked columns); only dictionaries
        # are unified, so a row group's dictionary columns share one dictionary (written directly).
        rows = self._pending[0] if len(self._pending) == 1 else pa.concat_tables(self._pending)
        rows = rows.unify_dictionaries()
        trace_ids = id_matrix(rows["trace_id"])
        cuts = row_group_cuts(trace_starts(trace_ids), self.cfg.parquet_row_group_size_spans)
        if not final and len(cuts) > 2:
            cuts = cuts[:-1]  # the last group may still be short: it waits for more traces
        elif not final:
            return
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._data_path, BLOCK_SCHEMA, **_writer_options(self.cfg))
        for begin, end in itertools.pairwise(cuts):
            self._parquet.write_table(rows.slice(begin, end - begin), row_group_size=end - begin)
            self._row_groups.append(
                RowGroupRange(
                    min_id=trace_ids[begin].tobytes().hex(),
                    max_id=trace_ids[end - 1].tobytes().hex(),
                    first_row=self._written_rows + begin,
                    rows=end - begin,
                )
            )
        done = cuts[-1]
        self._written_rows += done
        rest = rows.slice(done)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def finish(self) -> BlockMeta:
        """Upload the block; ``meta.json`` is written last, so until then the block is invisible."""
        if self.spans == 0:
            raise ValueError("a block needs at least one span")
        try:
            self._flush_groups(final=True)
            self._flush_summary()
            assert self._parquet is not None and self._summary is not None
            self._parquet.close()
            self._summary.close()
            with open(self._data_path, "rb") as f:
                f.seek(-8, io.SEEK_END)
                footer_size = int.from_bytes(f.read(4), "little") + 8
            return self._upload(footer_size)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the local files (nothing was made visible in the backend)."""
        for writer in (self._parquet, self._summary):
            if writer is not None and writer.is_open:
                writer.close()
        self._tmp.cleanup()

    def _sorted_keys(self, kind: str) -> list[str] | None:
        keys_ = self._keys[kind]
        return None if keys_ is None else sorted(keys_)

    def _upload(self, footer_size: int) -> BlockMeta:
        tenant, block_id, cfg = self.tenant, self.block_id, self.cfg
        bloom = ShardedBloom.build(
            pa.chunked_array(self._trace_ids),
            cfg.bloom_filter_false_positive,
            cfg.bloom_filter_shard_size_bytes,
        )
        files: dict[str, int] = {}
        for name, path in ((keys.DATA, self._data_path), (keys.SUMMARY, self._summary_path)):
            files[name] = path.stat().st_size
            self.backend.write_file(keys.block_key(tenant, block_id, name), path)
        for shard, blob in enumerate(bloom.to_bytes_list()):
            self.backend.write(keys.block_key(tenant, block_id, keys.bloom_name(shard)), blob)
            files[keys.bloom_name(shard)] = len(blob)
        meta = BlockMeta(
            format=WRITTEN_FORMAT,
            block_id=block_id,
            tenant_id=tenant,
            start_unix_nano=self._start,
            end_unix_nano=self._end,
            min_id=self._row_groups[0].min_id,
            max_id=self._row_groups[-1].max_id,
            total_traces=self._traces,
            total_spans=self.spans,
            size=sum(files.values()),
            compaction_level=self.compaction_level,
            bloom_shards=len(bloom.shards),
            bloom_false_positive=cfg.bloom_filter_false_positive,
            footer_size=footer_size,
            row_groups=self._row_groups,
            files=files,
            replaces=self.replaces,
            span_attribute_keys=self._sorted_keys("span"),
            resource_attribute_keys=self._sorted_keys("resource"),
            created_at=datetime.fromtimestamp(time.time(), UTC).isoformat(),
        )
        failpoints.hit("block.before_meta")
        self.backend.write(keys.block_key(tenant, block_id, keys.META), meta.to_bytes())
        return meta


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
    writer = BlockWriter(
        backend, tenant, cfg, compaction_level=compaction_level, replaces=replaces, block_id=block_id
    )
    writer.add(sort_spans(spans))
    return writer.finish()
