"""A block's data.parquet is plain Parquet: pyarrow and DuckDB read it without tracelake."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracelake.backend import open_backend
from tracelake.block import keys
from tracelake.codec.decode import decode_otlp
from tracelake.config import BlockConfig, LocalStorageConfig, TraceStorageConfig
from tracelake.encoding.v1.create import write_block
from tracelake.synth import SynthConfig, generate_request_bytes


def _block(tmp_path: Path) -> tuple[Path, int]:
    cfg = TraceStorageConfig(local=LocalStorageConfig(path=str(tmp_path)))
    backend = open_backend(cfg)
    tables = [decode_otlp(p).table for p in generate_request_bytes(SynthConfig(traces=100, seed=3))]
    spans = pa.concat_tables(tables)
    meta = write_block(backend, "single-tenant", spans, BlockConfig(parquet_row_group_size_spans=200))
    return tmp_path / keys.block_key("single-tenant", meta.block_id, keys.DATA), spans.num_rows


def test_pyarrow_reads_named_columns(tmp_path: Path) -> None:
    path, spans = _block(tmp_path)
    table = pq.read_table(path)
    assert table.num_rows == spans
    for column in ("trace_id", "span_id", "name", "service_name", "start_time_unix_nano", "duration_nano"):
        assert column in table.column_names
    assert set(table["service_name"].cast(pa.string()).to_pylist()) >= {"frontend"}
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups > 1
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert metadata.row_group(0).column(0).statistics.has_min_max


def test_duckdb_queries_the_block(tmp_path: Path) -> None:
    path, spans = _block(tmp_path)
    con = duckdb.connect()
    total, traces = con.execute(f"SELECT count(*), count(DISTINCT trace_id) FROM '{path}'").fetchone()
    assert (total, traces) == (spans, 100)
    by_service = con.execute(
        f"SELECT service_name, count(*) FROM '{path}' GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    assert len(by_service) == 5
    errors = con.execute(f"SELECT count(*) FROM '{path}' WHERE status_code = 2").fetchone()[0]
    assert 0 < errors < spans


def test_attributes_parse_as_the_spans_otlp_attributes(tmp_path: Path) -> None:
    """Each span's ``attributes`` value is its ``Span.attributes`` wire records: the OTLP classes
    read them, dedicated attributes included (their columns hold copies for search)."""
    path, spans = _block(tmp_path)
    table = pq.read_table(path, columns=["attributes", "http_method"])
    parsed = [Span.FromString(blob).attributes for blob in table["attributes"].to_pylist()]
    assert [len(attributes) for attributes in parsed] == [10] * spans  # synth: 10 per span
    methods = table["http_method"].to_pylist()
    assert any(methods)
    for attributes, method in zip(parsed, methods, strict=True):
        found = [kv.value.string_value for kv in attributes if kv.key == "http.method"]
        assert found == ([method] if method is not None else [])
