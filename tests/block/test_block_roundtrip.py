"""Blocks written and read back through each backend: exact round trip, pruning, visibility, format."""

from __future__ import annotations

import io
import json
import random
import uuid

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.strategies import canonical_spans, export_requests, only_trace
from tracelake.backend import Backend
from tracelake.block import keys
from tracelake.block.meta import BlockMeta
from tracelake.blocklist.tenant_index import list_blocks
from tracelake.codec.decode import decode_otlp
from tracelake.codec.encode import spans_to_traces_data
from tracelake.config import BlockConfig
from tracelake.encoding.v1.create import write_block
from tracelake.encoding.v1.find_trace import BlockReader
from tracelake.errors import BlockFormatError
from tracelake.synth import SynthConfig, generate_request_bytes

SMALL_GROUPS = BlockConfig(parquet_row_group_size_spans=7)


def _trace_ids(request: ExportTraceServiceRequest) -> set[bytes]:
    return {s.trace_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=export_requests())
def test_random_traces_round_trip_exactly_through_a_block(backend: Backend, request) -> None:
    spans = decode_otlp(request.SerializeToString()).table
    assume(spans.num_rows > 0)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    meta = write_block(backend, tenant, spans, SMALL_GROUPS)
    reader = BlockReader(
        backend, BlockMeta.from_bytes(backend.read(keys.block_key(tenant, meta.block_id, keys.META)))
    )
    expected = canonical_spans(request)
    whole = pa.concat_tables(list(reader.iter_spans()))
    assert canonical_spans(spans_to_traces_data(whole)) == expected
    for trace_id in _trace_ids(request):
        found = reader.find_trace(trace_id)
        assert found is not None
        assert canonical_spans(spans_to_traces_data(found)) == canonical_spans(only_trace(request, trace_id))
    assert meta.total_spans == spans.num_rows
    assert meta.total_traces == len(_trace_ids(request))


def _synthetic_block(backend: Backend, tenant: str = "single-tenant", traces: int = 200, cfg=SMALL_GROUPS):
    payloads = list(generate_request_bytes(SynthConfig(traces=traces, traces_per_request=50, seed=7)))
    tables = [decode_otlp(p).table for p in payloads]
    meta = write_block(backend, tenant, pa.concat_tables(tables), cfg)
    return meta, payloads


def test_meta_records_files_sizes_and_row_groups(backend: Backend) -> None:
    meta, _ = _synthetic_block(backend)
    stored = {info.key.split("/")[-1]: info.size for info in backend.list(f"single-tenant/{meta.block_id}/")}
    assert set(stored) == {
        keys.DATA,
        keys.SUMMARY,
        keys.META,
        *(f"bloom-{i}" for i in range(meta.bloom_shards)),
    }
    assert {k: v for k, v in stored.items() if k != keys.META} == meta.files
    assert meta.size == sum(meta.files.values())
    # Row groups cover every row once, in trace-id order, and never split a trace.
    assert sum(rg.rows for rg in meta.row_groups) == meta.total_spans
    assert [rg.first_row for rg in meta.row_groups] == sorted(rg.first_row for rg in meta.row_groups)
    for before, after in zip(meta.row_groups, meta.row_groups[1:], strict=False):
        assert before.max_id < after.min_id
    assert len(meta.row_groups) > 1


def test_missing_trace_is_answered_without_reading_data(backend: Backend) -> None:
    meta, _ = _synthetic_block(backend)
    reader = BlockReader(backend, meta)
    # Pick ids inside the block's id range that the bloom rules out; then remove data.parquet: the
    # answer must come from the bloom alone.
    rng = random.Random(5)
    candidates = [rng.randbytes(16) for _ in range(200)]
    absent = [c for c in candidates if meta.min_id < c.hex() < meta.max_id and not reader.may_contain(c)]
    assert absent, "expected ids the bloom rules out"
    backend.delete(keys.block_key("single-tenant", meta.block_id, keys.DATA))
    for trace_id in absent:
        assert reader.find_trace(trace_id) is None


def test_unknown_format_version_is_refused_with_a_clear_message(backend: Backend) -> None:
    meta, _ = _synthetic_block(backend, traces=5)
    key = keys.block_key("single-tenant", meta.block_id, keys.META)
    doc = json.loads(backend.read(key))
    doc["format"] = "vParquet4"
    backend.write(key, json.dumps(doc).encode())
    with pytest.raises(BlockFormatError, match=r"'vParquet4' is not supported.*tl1"):
        BlockMeta.from_bytes(backend.read(key), key)
    blocks = list_blocks(backend, "single-tenant")  # the block is left out, not the listing
    assert blocks.metas == [] and [e.block_id for e in blocks.unreadable] == [meta.block_id]
    assert "'vParquet4' is not supported" in str(blocks.unreadable[0])


def test_a_block_without_meta_json_is_invisible(backend: Backend) -> None:
    visible, _ = _synthetic_block(backend, traces=5)
    hidden, _ = _synthetic_block(backend, traces=5)
    backend.delete(keys.block_key("single-tenant", hidden.block_id, keys.META))
    assert [m.block_id for m in list_blocks(backend, "single-tenant").metas] == [visible.block_id]


def test_truncated_data_parquet_gives_a_block_format_error(backend: Backend) -> None:
    meta, _payloads = _synthetic_block(backend, traces=20)
    key = keys.block_key("single-tenant", meta.block_id, keys.DATA)
    backend.write(key, backend.read(key)[:-100])
    trace_id = bytes.fromhex(meta.min_id)
    with pytest.raises(BlockFormatError, match=r"data.parquet is corrupt"):
        BlockReader(backend, meta).find_trace(trace_id)


def test_corrupt_bloom_gives_a_block_format_error(backend: Backend) -> None:
    meta, _ = _synthetic_block(backend, traces=20)
    backend.write(keys.block_key("single-tenant", meta.block_id, "bloom-0"), b"garbage")
    with pytest.raises(BlockFormatError):
        BlockReader(backend, meta).find_trace(bytes.fromhex(meta.min_id))


class _CountingFile(io.RawIOBase):
    """A block's data.parquet where every read is one request, as against S3."""

    def __init__(self, data: bytes, log: list[int]) -> None:
        self._file = io.BytesIO(data)
        self._log = log

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:  # type: ignore[override]
        read = self._file.readinto(buffer)
        self._log.append(read)
        return read


@pytest.mark.parametrize("coalesce", [False, True])
def test_a_lookup_reads_its_row_group_in_one_request_where_reads_are_round_trips(
    tmp_path, coalesce: bool
) -> None:
    """On S3 each read is a GET: a present trace costs one read of its row group (not one per column
    chunk, 40-odd), while a local file may probe the trace_id column first."""
    from tracelake.backend.local import LocalBackend

    requests: list[int] = []

    class Remote(LocalBackend):
        coalesce_reads = coalesce

        def open_input_file(self, key: str) -> pa.NativeFile:
            return pa.PythonFile(_CountingFile(self.read(key), requests), mode="r")

    backend = Remote(tmp_path)
    meta, payloads = _synthetic_block(backend, traces=400, cfg=BlockConfig(parquet_row_group_size_spans=500))
    assert len(meta.row_groups) > 2
    reader = BlockReader(backend, meta)
    reader.parquet()  # the footer, read once per block and kept
    trace_ids = sorted({t for p in payloads for t in _trace_ids(ExportTraceServiceRequest.FromString(p))})
    for trace_id in random.Random(3).sample(trace_ids, 5):
        requests.clear()
        found = reader.find_trace(trace_id)
        assert found is not None and set(found["trace_id"].to_pylist()) == {trace_id}
        if coalesce:
            assert len(requests) == 1
        else:  # the probe, then one read per column chunk
            assert len(requests) > 10
